/* reengage dashboard: draws the charts whose data the page carries as JSON, and submits the
   preview form when a choice changes. No inline script: the page's CSP allows only files. */
(function () {
  "use strict";

  var PALETTE = ["#2f6fdf", "#e8833a", "#3aa670", "#c2417a", "#7a5cd6", "#b8a23a", "#46a3b5", "#8a8a8a"];

  function draw(canvas) {
    var source = document.getElementById(canvas.getAttribute("data-chart"));
    if (!source || typeof window.Chart === "undefined") {
      canvas.setAttribute("data-drawn", "false");
      return;
    }
    var spec = JSON.parse(source.textContent);
    var line = spec.type === "line";
    var datasets = spec.datasets.map(function (set, i) {
      var colour = PALETTE[i % PALETTE.length];
      return Object.assign(
        {
          backgroundColor: colour,
          borderColor: colour,
          borderWidth: line ? 2 : 0,
          pointRadius: line ? 2 : 0,
          tension: 0,
          fill: false
        },
        set
      );
    });
    var value = spec.horizontal ? "x" : "y";
    var scales = {
      x: { stacked: !!spec.stacked, beginAtZero: true },
      y: { stacked: !!spec.stacked, beginAtZero: true }
    };
    if (spec.max !== undefined) {
      scales[value].max = spec.max;
    }
    new window.Chart(canvas, {
      type: spec.type,
      data: { labels: spec.labels, datasets: datasets },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        indexAxis: spec.horizontal ? "y" : "x",
        plugins: { legend: { display: datasets.length > 1 } },
        scales: scales
      },
      plugins: [
        {
          id: "drawnMark",
          afterRender: function (chart) {
            chart.canvas.setAttribute("data-drawn", "true");
          }
        }
      ]
    });
  }

  function autosubmit(select) {
    select.addEventListener("change", function () {
      if (select.form) {
        select.form.submit();
      }
    });
  }

  function start() {
    document.querySelectorAll("canvas[data-chart]").forEach(draw);
    document.querySelectorAll("select[data-autosubmit]").forEach(autosubmit);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
