/* PriceParity report: draw the charts, sort, filter and page the findings table, expand all for print. */
(function () {
  "use strict";
  var each = function (list, fn) { Array.prototype.forEach.call(list, fn); };

  // Charts: each figure is JSON in a <script type="application/json">, never markup. They sit in
  // the flagged findings' details, closed by default, so a chart is drawn when its details opens
  // (a chart drawn while hidden would have no width); all of them before printing. A figure with a
  // `narrow` layout (labels above the rows) uses it when the chart is narrower than `narrow.below`.
  var CONFIG = { displayModeBar: false, displaylogo: false, responsive: true, showLink: false, showTips: false };
  var charts = document.querySelectorAll("div.chart[data-figure]");
  var figureFor = function (div, width) {  // parsed afresh each time: Plotly keeps and changes the layout it gets
    var figure = JSON.parse(document.getElementById(div.getAttribute("data-figure")).textContent);
    var narrow = Boolean(figure.narrow) && width < figure.narrow.below;
    div.setAttribute("data-layout", narrow ? "narrow" : "wide");
    return { data: figure.data, layout: narrow ? figure.narrow.layout : figure.layout };
  };
  var draw = function (div) {
    if (div.getAttribute("data-drawn") || typeof Plotly === "undefined") { return; }
    if (!document.getElementById(div.getAttribute("data-figure"))) { return; }
    div.setAttribute("data-drawn", "1");
    var figure = figureFor(div, div.clientWidth);
    Plotly.newPlot(div, figure.data, figure.layout, CONFIG);
  };
  var refit = function (div, width, force) {  // redraw when the chart's width crosses to the other layout
    if (!div.getAttribute("data-drawn") || width <= 0) { return; }
    var before = div.getAttribute("data-layout");
    var figure = figureFor(div, width);
    if (force || div.getAttribute("data-layout") !== before) {
      if (force) { figure.layout.width = width; }
      Plotly.react(div, figure.data, figure.layout, CONFIG);
    }
  };
  var drawAll = function () { each(charts, draw); };
  var drawOpen = function (details) {
    if (!details.open) { return; }
    each(details.querySelectorAll("div.chart[data-figure]"), function (div) {
      draw(div);
      refit(div, div.clientWidth, false);
    });
  };
  each(document.querySelectorAll("details"), function (details) {
    details.addEventListener("toggle", function () { drawOpen(details); });
    drawOpen(details);
  });
  var resizing = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizing);
    resizing = setTimeout(function () {
      each(charts, function (div) { refit(div, div.clientWidth, false); });
    }, 150);
  });

  // A link to a cause or a finding's details (from the table, or a related flag's row from its cause)
  // opens them, or brings the row onto the table's page, before the browser scrolls there; so does
  // opening the report at such an address.
  var revealRow = null;  // set by the findings table below
  var openTarget = function (id) {
    var target = id && document.getElementById(id);
    if (!target) { return; }
    for (var el = target; el; el = el.parentElement) {
      if (el.tagName === "DETAILS") { el.open = true; }
    }
    var evidence = target.querySelector(":scope > details.evidence");
    if (evidence) { evidence.open = true; }
    if (target.tagName === "TR" && revealRow) { revealRow(target); }
  };
  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("a[href^='#']") : null;
    if (link) { openTarget(decodeURIComponent(link.getAttribute("href").slice(1))); }
  });
  var openFromAddress = function () {
    if (!location.hash) { return; }
    var id = decodeURIComponent(location.hash.slice(1));
    openTarget(id);
    var target = document.getElementById(id);
    if (target) { target.scrollIntoView(); }
  };
  window.addEventListener("hashchange", openFromAddress);

  // Findings table: sort by clicking a header (again to reverse), filter with the selects, and
  // page it (data-page-size rows a page). Without script every row shows and the pager stays hidden.
  var table = document.getElementById("findings-table");
  if (table) {
    var body = table.tBodies[0];
    var headers = table.tHead.rows[0].cells;
    var pageSize = parseInt(table.getAttribute("data-page-size"), 10) || 0;
    var pager = document.getElementById("findings-pager");
    var page = 0;
    var showAll = false;
    var selects = document.querySelectorAll("select[data-filter]");
    var shown = document.getElementById("findings-shown");

    var matches = function (row) {
      return Array.prototype.every.call(selects, function (select) {
        return select.value === "" || row.getAttribute("data-" + select.getAttribute("data-filter")) === select.value;
      });
    };
    var update = function () {
      var matching = Array.prototype.filter.call(body.rows, matches);
      var paged = pageSize > 0 && !showAll;
      var pages = paged ? Math.max(1, Math.ceil(matching.length / pageSize)) : 1;
      page = Math.min(page, pages - 1);
      var from = paged ? page * pageSize : 0;
      var to = paged ? Math.min(from + pageSize, matching.length) : matching.length;
      each(body.rows, function (row) { row.hidden = true; });
      matching.slice(from, to).forEach(function (row) { row.hidden = false; });
      if (shown) { shown.textContent = matching.length + " of " + body.rows.length + " findings shown"; }
      if (!pager) { return; }
      pager.hidden = matching.length <= pageSize;
      pager.querySelector("[data-page=previous]").disabled = !paged || page === 0;
      pager.querySelector("[data-page=next]").disabled = !paged || page >= pages - 1;
      var all = pager.querySelector("[data-page=all]");
      all.setAttribute("aria-pressed", showAll ? "true" : "false");
      all.textContent = showAll ? "Show " + pageSize + " a page" : "Show all " + matching.length;
      document.getElementById("findings-page").textContent = paged
        ? "Page " + (page + 1) + " of " + pages + " (rows " + (from + 1) + "\u2013" + to + ")"
        : "All " + matching.length + " rows";
    };

    var cellValue = function (row, index, type) {
      var cell = row.cells[index];
      var raw = cell.hasAttribute("data-value") ? cell.getAttribute("data-value") : cell.textContent.trim();
      if (type === "number") { return raw === "" ? null : parseFloat(raw); }
      return raw.toLowerCase();
    };
    each(headers, function (th, index) {
      var button = th.querySelector("button.sort");
      if (!button) { return; }
      button.addEventListener("click", function () {
        var type = th.getAttribute("data-type");
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        each(headers, function (other) { other.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = cellValue(a, index, type), y = cellValue(b, index, type);
          if (x === y) { return 0; }
          if (x === null) { return 1; }   // missing values last, whatever the direction
          if (y === null) { return -1; }
          var order = x < y ? -1 : 1;
          return ascending ? order : -order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
        page = 0;
        update();
      });
    });
    each(selects, function (select) {
      select.addEventListener("change", function () { page = 0; update(); });
    });
    revealRow = function (row) {  // a hidden row a link points to: clear the filters, turn to its page
      if (!matches(row)) { each(selects, function (select) { select.value = ""; }); }
      var matching = Array.prototype.filter.call(body.rows, matches);
      page = pageSize > 0 ? Math.floor(matching.indexOf(row) / pageSize) : 0;
      update();
    };
    if (pager) {
      pager.addEventListener("click", function (event) {
        var button = event.target.closest ? event.target.closest("button[data-page]") : null;
        if (!button || button.disabled) { return; }
        var action = button.getAttribute("data-page");
        if (action === "all") { showAll = !showAll; page = 0; }
        else { page += action === "next" ? 1 : -1; }
        update();
        // The new page starts at the table's top: bring it into view if it has scrolled away.
        if (action !== "all" && table.getBoundingClientRect().top < 0) { table.scrollIntoView(); }
      });
    }
    update();
  }

  // Print: open every collapsible section and fit the charts to a portrait page (A4 or Letter
  // with the stylesheet's margins is about 680 CSS pixels wide); undo both afterwards.
  var reopened = [];
  var PRINT_WIDTH = 680;
  window.addEventListener("beforeprint", function () {
    each(document.querySelectorAll("details:not([open])"), function (d) {
      d.open = true;
      reopened.push(d);
    });
    if (typeof Plotly === "undefined") { return; }
    drawAll();
    each(charts, function (div) { refit(div, PRINT_WIDTH, true); });
  });
  window.addEventListener("afterprint", function () {
    if (typeof Plotly !== "undefined") {  // back to the screen's width while every chart is still open
      each(charts, function (div) {
        var figure = figureFor(div, div.clientWidth);
        Plotly.react(div, figure.data, figure.layout, CONFIG);
      });
    }
    reopened.forEach(function (d) { d.open = false; });
    reopened = [];
  });

  openFromAddress();  // last: a row the address names is on a page only once the table is paged
})();
