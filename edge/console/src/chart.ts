import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import { html } from './html.ts';

export interface ChartSeries {
  label: string;
  stroke: string;
}

export interface ChartProps {
  id: string;
  title: string;
  /** x then one array per series (null: no value at that x). */
  data: (number | null)[][];
  series: ChartSeries[];
  xLabel: string;
  yLabel: string;
  /** Days on the x axis (unix seconds) instead of plain numbers. */
  time?: boolean;
  bars?: boolean;
}

const PALETTE = ['#2563eb', '#dc2626', '#059669', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#4b5563'];
export const color = (i: number) => PALETTE[i % PALETTE.length]!;

/** Sum of every plotted y value: what the chart shows in total (the tests compare it with the API). */
function plottedSum(data: uPlot.AlignedData): number {
  let sum = 0;
  for (const ys of data.slice(1)) for (const y of ys) if (typeof y === 'number') sum += y;
  return sum;
}

/**
 * One uPlot chart that follows its container's width and takes new data in place (a live curve
 * grows without a redraw from scratch). The figure carries data-points and data-sum read back
 * from the chart itself.
 */
export function Chart(props: ChartProps) {
  const figure = useRef<HTMLElement>(null);
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const shape = `${props.series.map((s) => s.label).join('|')}:${props.bars ? 'bars' : 'lines'}`;

  useEffect(() => {
    const el = box.current!;
    const opts: uPlot.Options = {
      width: Math.max(240, el.clientWidth),
      height: 240,
      scales: { x: { time: props.time ?? false } },
      axes: [{ label: props.xLabel }, { label: props.yLabel, size: 60 }],
      series: [
        { label: props.xLabel },
        ...props.series.map((s) => ({
          label: s.label,
          stroke: s.stroke,
          fill: props.bars ? `${s.stroke}99` : undefined,
          width: 2,
          spanGaps: true,
          points: { show: true, size: 5 },
          ...(props.bars ? { paths: uPlot.paths.bars!({ size: [0.6, 60] }) } : {}),
        })),
      ],
    };
    const u = new uPlot(opts, props.data as uPlot.AlignedData, el);
    plot.current = u;
    const resize = new ResizeObserver(() => u.setSize({ width: Math.max(240, el.clientWidth), height: 240 }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      u.destroy();
      plot.current = null;
    };
  }, [shape]);

  useEffect(() => {
    const u = plot.current;
    if (!u) return;
    u.setData(props.data as uPlot.AlignedData);
    const f = figure.current!;
    f.dataset.points = String(u.data[0]!.length);
    f.dataset.sum = String(plottedSum(u.data));
  }, [props.data, shape]);

  return html`<figure class="chart" id=${props.id} ref=${figure} aria-label=${props.title}>
    <figcaption>${props.title}</figcaption>
    <div ref=${box}></div>
  </figure>`;
}
