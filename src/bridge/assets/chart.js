// Charts with the vendored uPlot (window.uPlot, loaded before the modules run).

const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#4b5563'];

/** A time series chart in `el`: `xs` Unix seconds, `series` [{label, values}]. Returns a
 * function that frees it. */
export function timeChart(el, xs, series, opts = {}) {
  const width = Math.max(280, Math.min(el.clientWidth || 800, 1100));
  const U = window.uPlot;
  if (!U) {
    el.textContent = 'The chart library did not load.';
    return () => {};
  }
  const plot = new U({
    width,
    height: opts.height || 220,
    title: opts.title,
    scales: { x: { time: true } },
    axes: [{}, { label: opts.yLabel || '', size: 60 }],
    series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: COLORS[i % COLORS.length], width: 2, points: { show: xs.length < 60 } }))],
  }, [xs, ...series.map((s) => s.values)], el);
  const onResize = () => plot.setSize({ width: Math.max(280, Math.min(el.clientWidth || 800, 1100)), height: opts.height || 220 });
  window.addEventListener('resize', onResize);
  return () => {
    window.removeEventListener('resize', onResize);
    plot.destroy();
  };
}
