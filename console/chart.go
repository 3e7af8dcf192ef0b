package console

import (
	"fmt"
	"net/http"

	"github.com/go-analyze/charts"

	"github.com/outboxrelay/outbox/relay"
)

// chart serves the events settled per minute over the last chartMinutes
// as an SVG image (go-analyze/charts does the axes and the scaling), drawn
// with the summary, in the background. It is an <img> on the overview, so
// it runs nothing on the page.
func (c *Console) chart(w http.ResponseWriter, r *http.Request, ses session) {
	svg, err := c.summary.getChart(r.Context())
	if err != nil {
		c.fail(w, r, ses, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Security-Policy", chartPolicy)
	w.Header().Set("Content-Type", "image/svg+xml")
	_, _ = w.Write(svg)
}

// renderRate draws one bar per minute, labelled by UTC time.
func renderRate(rate []relay.MinuteCount) ([]byte, error) {
	values := make([]float64, len(rate))
	labels := make([]string, len(rate))
	for i, m := range rate {
		values[i] = float64(m.Settled)
		labels[i] = m.Minute.UTC().Format("15:04")
	}
	opt := charts.NewBarChartOptionWithData([][]float64{values})
	opt.CategoryAxis.Labels = labels
	opt.CategoryAxis.LabelCount = 7
	opt.Theme = charts.GetTheme(charts.ThemeLight)
	opt.Title = charts.TitleOption{Text: "Events settled per minute (UTC)"}
	p := charts.NewPainter(charts.PainterOptions{OutputFormat: charts.ChartOutputSVG, Width: 900, Height: 260})
	if err := p.BarChart(opt); err != nil {
		return nil, fmt.Errorf("console: draw the chart: %w", err)
	}
	return p.Bytes()
}
