/* emkit atlas viewer: OpenSeadragon over the atlas's DeepZoom tiles, a scale bar, the
 * cursor position in µm and the overlays of atlas.json, each with a checkbox.
 *
 * The atlas comes from atlas.js (window.EMKIT_ATLAS, written by `emkit atlas serve` or
 * `emkit atlas export`); tiles and overlay images are loaded as images. Nothing is fetched
 * with XHR, so an exported site also works opened from disk (file://).
 *
 * Coordinates: atlas pixels, x the column and y the row; the image point (x, y) is the
 * top-left corner of pixel (x, y), so a pixel's centre is at (x + 0.5, y + 0.5). Overlay
 * points and polygons are given as pixel indices and drawn at pixel centres.
 *
 * window.emkitAtlas is the page's small API (used by tests and for scripting):
 *   viewer          the OpenSeadragon viewer
 *   scale()         {x0, y0, s}: where image point (0, 0) is on screen and screen px per
 *                   atlas px, now
 *   goTo(x, y, s)   put atlas point (x, y) in the middle of the view, s screen px per atlas px
 *   whenIdle(done)  call done() once every tile in view is loaded and drawn
 *   setOverlay(name, on)
 */
(function () {
  "use strict";

  var MAX_BAR_PX = 160;  // the scale bar is the longest round length up to this many px
  var SVG = "http://www.w3.org/2000/svg";  // the SVG namespace (an identifier, not a fetch)
  var atlas = window.EMKIT_ATLAS;

  function fail(message) {
    var box = document.getElementById("error");
    box.textContent = message;
    box.hidden = false;
  }

  if (!window.OpenSeadragon) {
    fail("OpenSeadragon did not load (vendor/openseadragon/openseadragon.min.js is missing)");
    return;
  }
  if (!atlas) {
    fail("atlas.js did not load; serve the atlas with `emkit atlas serve DIR`");
    return;
  }
  var OSD = window.OpenSeadragon;

  var viewer = OSD({
    id: "viewer",
    prefixUrl: "vendor/openseadragon/images/",
    tileSources: {
      width: atlas.width,
      height: atlas.height,
      tileSize: atlas.tile_size,
      tileOverlap: atlas.overlap,
      minLevel: 0,
      maxLevel: atlas.max_level,
      getTileUrl: function (level, x, y) {
        return atlas.tiles + level + "/" + x + "_" + y + "." + atlas.tile_format;
      }
    },
    // The 2D canvas: it draws tiles loaded from file:// too (WebGL refuses them), and with
    // smoothing off a zoomed-in atlas pixel is a sharp square of its own value.
    drawer: "canvas",
    imageSmoothingEnabled: false,
    showNavigator: true,
    navigatorPosition: "BOTTOM_RIGHT",
    navigatorAutoFade: false,
    navigationControlAnchor: OSD.ControlAnchor.TOP_RIGHT,
    showRotationControl: false,
    maxZoomPixelRatio: 16,
    visibilityRatio: 0.2,
    animationTime: 0.5,
    blendTime: 0,
    crossOriginPolicy: false,
    gestureSettingsMouse: { clickToZoom: false, dblClickToZoom: true }
  });

  // ------------------------------------------------------------------ title
  // Without a pixel size (null in atlas.json) lengths and positions are in atlas pixels.
  var known = typeof atlas.pixel_size_nm === "number" && atlas.pixel_size_nm > 0;
  var pixelNm = known ? atlas.pixel_size_nm : 1;
  document.getElementById("title").textContent = atlas.name;
  document.getElementById("size").textContent =
    atlas.width + " × " + atlas.height + " px · " + (known
      ? formatNumber(pixelNm) + " nm/px · " + formatLength(atlas.width * pixelNm) + " × " +
        formatLength(atlas.height * pixelNm)
      : "pixel size unknown");

  function formatNumber(value) {
    return String(Number(value.toPrecision(6)));
  }

  function formatLength(nm) {
    if (!known) { return formatNumber(nm) + " px"; }
    if (nm >= 1e6) { return formatNumber(nm / 1e6) + " mm"; }
    if (nm >= 1000) { return formatNumber(nm / 1000) + " µm"; }
    return formatNumber(nm) + " nm";
  }

  // ------------------------------------------------------------------ geometry
  function item() { return viewer.world.getItemAt(0); }

  function scale() {
    var image = item();
    if (!image) { return null; }
    var a = image.imageToViewerElementCoordinates(new OSD.Point(0, 0));
    var b = image.imageToViewerElementCoordinates(new OSD.Point(atlas.width, 0));
    return { x0: a.x, y0: a.y, s: (b.x - a.x) / atlas.width };
  }

  // ------------------------------------------------------------------ overlays
  var svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "emkit-overlays");
  var root = document.createElementNS(SVG, "g");
  svg.appendChild(root);
  viewer.canvas.appendChild(svg);
  var layers = {};

  function node(name, attributes, parent) {
    var element = document.createElementNS(SVG, name);
    Object.keys(attributes).forEach(function (key) {
      element.setAttribute(key, attributes[key]);
    });
    if (parent) { parent.appendChild(element); }
    return element;
  }

  function addOverlay(overlay) {
    var g = node("g", { "data-overlay": overlay.name, opacity: overlay.opacity }, root);
    if (overlay.image) {
      // A PNG over the whole atlas (any size; stretched), already coloured and transparent.
      node("image", {
        href: overlay.image, x: 0, y: 0, width: atlas.width, height: atlas.height,
        preserveAspectRatio: "none"
      }, g);
    } else if (overlay.points) {
      var dots = node("g", { fill: "none", stroke: overlay.color, "stroke-width": 2 }, g);
      overlay.points.forEach(function (p) {
        node("circle", {
          cx: p[0] + 0.5, cy: p[1] + 0.5, r: p.length > 2 ? p[2] : overlay.radius_px,
          "vector-effect": "non-scaling-stroke"
        }, dots);
      });
    } else {
      var lines = node("g", { fill: "none", stroke: overlay.color, "stroke-width": 1.5 }, g);
      overlay.polygons.forEach(function (polygon) {
        node("polygon", {
          points: polygon.map(function (p) { return (p[0] + 0.5) + "," + (p[1] + 0.5); }).join(" "),
          "vector-effect": "non-scaling-stroke"
        }, lines);
      });
    }
    layers[overlay.name] = g;

    var label = document.createElement("label");
    var box = document.createElement("input");
    box.type = "checkbox";
    box.checked = overlay.visible;
    box.dataset.overlay = overlay.name;
    var swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = overlay.color;
    var text = document.createElement("span");
    text.textContent = overlay.name;
    label.appendChild(box);
    label.appendChild(swatch);
    label.appendChild(text);
    document.getElementById("overlays").appendChild(label);
    box.addEventListener("change", function () { setOverlay(overlay.name, box.checked); });
    setOverlay(overlay.name, overlay.visible);
  }

  function setOverlay(name, on) {
    var g = layers[name];
    if (!g) { return false; }
    g.style.display = on ? "" : "none";
    var box = document.querySelector('#overlays input[data-overlay="' + CSS.escape(name) + '"]');
    if (box) { box.checked = on; }
    return true;
  }

  if (atlas.overlays.length) {
    document.getElementById("overlays").hidden = false;
    atlas.overlays.forEach(addOverlay);
  }

  // ------------------------------------------------------------------ scale bar
  var bar = document.getElementById("scalebar-bar");
  var barLabel = document.getElementById("scalebar-label");

  function roundLength(maxNm) {
    var power = Math.pow(10, Math.floor(Math.log10(maxNm)));
    var best = power;
    [1, 2, 5, 10].forEach(function (m) { if (m * power <= maxNm * (1 + 1e-9)) { best = m * power; } });
    return Number(best.toPrecision(12));
  }

  function updateScaleBar(s) {
    var nmPerScreenPx = pixelNm / s;
    var length = roundLength(MAX_BAR_PX * nmPerScreenPx);
    var px = Math.round(length / nmPerScreenPx);
    bar.style.width = px + "px";
    bar.dataset.nm = String(length);
    bar.dataset.px = String(px);
    barLabel.textContent = formatLength(length);
  }

  // ------------------------------------------------------------------ cursor position
  var coords = document.getElementById("coords");
  var cursor = null;
  var unit = known ? " µm" : " px";
  var toUnit = function (px) { return known ? px * pixelNm / 1000 : px; };
  var decimals = known ? Math.max(0, Math.ceil(-Math.log10(pixelNm / 1000))) : 1;

  function updateCoords() {
    var image = item();
    if (!cursor || !image) { return; }
    var p = image.viewerElementToImageCoordinates(cursor);
    // 1e-9: a cursor on a pixel's edge reads as that pixel despite rounding in the transform
    var col = Math.floor(p.x + 1e-9), row = Math.floor(p.y + 1e-9);
    var inside = col >= 0 && row >= 0 && col < atlas.width && row < atlas.height;
    coords.dataset.x = String(p.x);
    coords.dataset.y = String(p.y);
    coords.textContent = "x " + toUnit(p.x).toFixed(decimals) + unit + "   y " +
      toUnit(p.y).toFixed(decimals) + unit + "\n" +
      (inside ? "pixel " + col + ", " + row : "outside the atlas");
  }

  new OSD.MouseTracker({
    element: viewer.container,
    moveHandler: function (event) { cursor = event.position; updateCoords(); },
    leaveHandler: function () { cursor = null; coords.textContent = "move the cursor over the atlas"; }
  });

  // ------------------------------------------------------------------ every frame
  function update() {
    var now = scale();
    if (!now) { return; }
    root.setAttribute("transform", "translate(" + now.x0 + " " + now.y0 + ") scale(" + now.s + ")");
    updateScaleBar(now.s);
    updateCoords();
  }

  viewer.addHandler("open", update);
  viewer.addHandler("update-viewport", update);
  viewer.addHandler("resize", update);
  viewer.addHandler("open-failed", function (event) {
    fail("the atlas could not be opened: " + (event.message || "unknown error"));
  });

  // ------------------------------------------------------------------ API
  function whenIdle(done) {
    var frames = 0;
    (function check() {
      var image = item();
      if (image && image.getFullyLoaded() && !viewer.world.needsDraw()) {
        frames += 1;
        if (frames >= 3) { done(); return; }
      } else {
        frames = 0;
      }
      window.requestAnimationFrame(check);
    })();
  }

  function goTo(x, y, s) {
    var image = item();
    viewer.viewport.zoomTo(image.imageToViewportZoom(s), null, true);
    viewer.viewport.panTo(image.imageToViewportCoordinates(x, y), true);
    viewer.forceRedraw();  // (calling viewport.update() here would hide the change from the draw loop)
    update();
  }

  window.emkitAtlas = {
    viewer: viewer,
    atlas: atlas,
    scale: scale,
    goTo: goTo,
    whenIdle: whenIdle,
    setOverlay: setOverlay,
    isOpen: function () { return Boolean(item()); }
  };
})();
