/* gpuviz book: on a narrow page (a phone), a plotly figure whose panels sit side by side
   (make_subplots with one row) gets them one above the other, each the page's width, and a
   legend that sat on the right goes below. Side by side on a phone, each panel would be too
   narrow to read. Only the layout changes, never the data; a wider page gets it back. */
(function () {
  "use strict";
  const NARROW = 560;   // px: below this width a figure is stacked
  const GAP = 0.16;     // of the plotting height, between stacked panels (room for an axis title)

  function domain(ax) {
    return (ax && ax.domain) ? ax.domain.slice() : [0, 1];
  }

  // The x axes of a one-row grid of panels, left to right, and the y axis of each; null when
  // the figure is not one (a single panel, or panels that are already stacked).
  function row(layout) {
    const xs = Object.keys(layout).filter(k => /^xaxis\d*$/.test(k) && layout[k])
      .sort((a, b) => domain(layout[a])[0] - domain(layout[b])[0]);
    if (xs.length < 2) return null;
    const ys = xs.map(k => "yaxis" + String(layout[k].anchor || "y").slice(1));
    const first = domain(layout[ys[0]]);
    for (let i = 0; i < xs.length; i++) {
      const d = domain(layout[ys[i]]);
      if (!layout[ys[i]] || Math.abs(d[0] - first[0]) > 1e-6 || Math.abs(d[1] - first[1]) > 1e-6) return null;
      if (i && domain(layout[xs[i]])[0] < domain(layout[xs[i - 1]])[1] - 1e-6) return null;
    }
    return {xs, ys, top: first[1]};
  }

  function stack(gd) {
    const L = gd.layout, r = row(L);
    if (!r) return;
    const n = r.xs.length, m = L.margin || {}, t = m.t ?? 100, b = m.b ?? 80;
    const height = L.height || gd.clientHeight || 450;
    const plot = Math.max(150, height - t - b);
    const size = (1 - GAP * (n - 1)) / n;
    const update = {}, wide = {height: L.height ?? null, annotations: L.annotations, legend: L.legend};
    const newHeight = Math.round(t + b + plot * n * 0.85);
    r.xs.forEach((x, i) => {
      const top = 1 - i * (size + GAP), y = r.ys[i];
      wide[`${x}.domain`] = domain(L[x]);
      wide[`${y}.domain`] = domain(L[y]);
      wide[`${y}.showticklabels`] = L[y].showticklabels ?? null;
      update[`${x}.domain`] = [0, 1];
      update[`${y}.domain`] = [top - size, top];
      update[`${y}.showticklabels`] = true;
    });
    // the panels' titles (make_subplots puts them above each column, in paper coordinates)
    if (Array.isArray(L.annotations)) {
      update.annotations = L.annotations.map(a => {
        if (a.xref !== "paper" || a.yref !== "paper" || Math.abs((a.y ?? 0) - r.top) > 0.02) return a;
        const i = r.xs.findIndex(x => {
          const d = domain(L[x]);
          return Math.abs((d[0] + d[1]) / 2 - (a.x ?? -1)) < 0.02;
        });
        if (i < 0) return a;
        return Object.assign({}, a, {x: 0.5, y: 1 - i * (size + GAP)});
      });
    }
    if (L.legend && (L.legend.x ?? 1.02) > 1) {   // a legend beside the panels: below them
      update.legend = Object.assign({}, L.legend, {orientation: "h", x: 0, xanchor: "left",
                                                   y: -0.08, yanchor: "top"});
    }
    update.height = newHeight;
    // the book sizes each figure's div and the div around it: they grow too
    wide.heights = [gd, gd.parentElement].map(el => el && el.style.height);
    [gd, gd.parentElement].forEach(el => { if (el && el.style.height) el.style.height = `${newHeight}px`; });
    gd._gpuvizWide = wide;
    Plotly.relayout(gd, update);
  }

  function unstack(gd) {
    const wide = gd._gpuvizWide;
    delete gd._gpuvizWide;
    [gd, gd.parentElement].forEach((el, i) => { if (el && wide.heights[i]) el.style.height = wide.heights[i]; });
    delete wide.heights;
    Plotly.relayout(gd, wide);
  }

  function fit(gd) {
    if (!gd.layout || !window.Plotly) return;
    const narrow = gd.clientWidth > 0 && gd.clientWidth < NARROW;
    if (narrow && !gd._gpuvizWide) stack(gd);
    else if (!narrow && gd._gpuvizWide) unstack(gd);
  }

  function all() {
    document.querySelectorAll(".plotly-graph-div").forEach(fit);
  }

  window.addEventListener("load", () => { all(); setTimeout(all, 500); });
  window.addEventListener("resize", () => { clearTimeout(all._t); all._t = setTimeout(all, 200); });
})();
