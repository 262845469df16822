/* PriceParity report: draw the charts, sort and filter the findings table, expand all for print. */
(function () {
  "use strict";

  // Charts: each figure is JSON in a <script type="application/json">, never markup. A run can
  // flag dozens of findings, so charts are drawn as they come near the screen (all before printing).
  var charts = document.querySelectorAll("div.chart[data-figure]");
  var draw = function (div) {
    if (div.getAttribute("data-drawn") || typeof Plotly === "undefined") { return; }
    var source = document.getElementById(div.getAttribute("data-figure"));
    if (!source) { return; }
    div.setAttribute("data-drawn", "1");
    var figure = JSON.parse(source.textContent);
    Plotly.newPlot(div, figure.data, figure.layout, {
      displayModeBar: false, displaylogo: false, responsive: true, showLink: false, showTips: false
    });
  };
  var drawAll = function () { Array.prototype.forEach.call(charts, draw); };
  if ("IntersectionObserver" in window) {
    var observer = new IntersectionObserver(function (entries) {
      entries.forEach(function (entry) {
        if (entry.isIntersecting) { observer.unobserve(entry.target); draw(entry.target); }
      });
    }, { rootMargin: "600px 0px" });
    Array.prototype.forEach.call(charts, function (div) { observer.observe(div); });
  } else {
    drawAll();
  }

  // Findings table: sort by clicking a header (again to reverse), filter with the selects.
  var table = document.getElementById("findings-table");
  if (table) {
    var body = table.tBodies[0];
    var headers = table.tHead.rows[0].cells;
    var cellValue = function (row, index, type) {
      var cell = row.cells[index];
      var raw = cell.hasAttribute("data-value") ? cell.getAttribute("data-value") : cell.textContent.trim();
      if (type === "number") { return raw === "" ? null : parseFloat(raw); }
      return raw.toLowerCase();
    };
    Array.prototype.forEach.call(headers, function (th, index) {
      var button = th.querySelector("button.sort");
      if (!button) { return; }
      button.addEventListener("click", function () {
        var type = th.getAttribute("data-type");
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(headers, function (other) { other.removeAttribute("aria-sort"); });
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
      });
    });

    var selects = document.querySelectorAll("select[data-filter]");
    var shown = document.getElementById("findings-shown");
    var applyFilters = function () {
      var visible = 0;
      Array.prototype.forEach.call(body.rows, function (row) {
        var keep = Array.prototype.every.call(selects, function (select) {
          return select.value === "" || row.getAttribute("data-" + select.getAttribute("data-filter")) === select.value;
        });
        row.hidden = !keep;
        if (keep) { visible += 1; }
      });
      if (shown) { shown.textContent = visible + " of " + body.rows.length + " findings shown"; }
    };
    Array.prototype.forEach.call(selects, function (select) { select.addEventListener("change", applyFilters); });
  }

  // Print: open every collapsible section and fit the charts to a portrait page (A4 or Letter
  // with the stylesheet's margins is about 680 CSS pixels wide); undo both afterwards.
  var reopened = [];
  var PRINT_WIDTH = 680;
  window.addEventListener("beforeprint", function () {
    Array.prototype.forEach.call(document.querySelectorAll("details:not([open])"), function (d) {
      d.open = true;
      reopened.push(d);
    });
    if (typeof Plotly === "undefined") { return; }
    drawAll();
    Array.prototype.forEach.call(charts, function (div) { Plotly.relayout(div, { width: PRINT_WIDTH }); });
  });
  window.addEventListener("afterprint", function () {
    reopened.forEach(function (d) { d.open = false; });
    reopened = [];
    if (typeof Plotly === "undefined") { return; }
    Array.prototype.forEach.call(charts, function (div) {
      Plotly.relayout(div, { width: null, autosize: true });
    });
  });
})();
