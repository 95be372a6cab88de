package main

import (
	"image/color"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// bucket is the charts' time resolution.
const bucket = 250 * time.Millisecond

// series is a run's requests per second and p99 latency (ms) per bucket.
func series(r runResult) (rps, p99 plotter.XYs) {
	n := int(r.dur/bucket) + 1
	oks := make([]int, n)
	lats := make([][]time.Duration, n)
	for _, s := range r.samples {
		i := int(s.at / bucket)
		if i >= n {
			continue
		}
		if s.fail == "" {
			oks[i]++
		}
		lats[i] = append(lats[i], s.took)
	}
	for i := range n - 1 { // the last bucket is partial
		x := (time.Duration(i) * bucket).Seconds()
		rps = append(rps, plotter.XY{X: x, Y: float64(oks[i]) / bucket.Seconds()})
		p99 = append(p99, plotter.XY{X: x, Y: float64(percentile(lats[i], 99)) / float64(time.Millisecond)})
	}
	return rps, p99
}

// charts draws requests/s and p99 latency over time, one line per method,
// the upgrades marked, as two SVG files.
func charts(runs []runResult, rpsFile, p99File string) error {
	for _, c := range []struct {
		file, title, y string
		rps            bool
	}{
		{rpsFile, "Requests per second during upgrades", "requests/s (250 ms buckets)", true},
		{p99File, "p99 latency during upgrades", "p99 latency, ms (250 ms buckets)", false},
	} {
		p := plot.New()
		p.Title.Text = c.title
		p.X.Label.Text = "seconds (dashed: an upgrade begins)"
		p.Y.Label.Text = c.y
		p.Legend.Top = true
		ymax := 1.0
		for i, r := range runs {
			rps, p99 := series(r)
			xys := p99
			if c.rps {
				xys = rps
			}
			for _, v := range xys {
				ymax = max(ymax, v.Y)
			}
			line, err := plotter.NewLine(xys)
			if err != nil {
				return err
			}
			line.Color = plotutil.Color(i)
			line.Width = vg.Points(1.2)
			p.Add(line)
			p.Legend.Add(r.method, line)
		}
		if len(runs) > 0 {
			for _, w := range runs[0].upgrades {
				x := w.from.Seconds()
				mark, err := plotter.NewLine(plotter.XYs{{X: x, Y: 0}, {X: x, Y: ymax}})
				if err != nil {
					return err
				}
				mark.Color = color.Gray{Y: 160}
				mark.Dashes = []vg.Length{vg.Points(3), vg.Points(3)}
				p.Add(mark)
			}
		}
		if err := p.Save(9*vg.Inch, 4.5*vg.Inch, c.file); err != nil {
			return err
		}
	}
	return nil
}
