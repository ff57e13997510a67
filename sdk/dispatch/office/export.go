package office

import (
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
)

// writeGeoJSON writes a FeatureCollection: one LineString of the whole track (when it has two fixes or
// more) and one Point per fix with its time, seq and optional fields, so every stored fix is in it.
func writeGeoJSON(w io.Writer, truck string, fixes []dispatch.Fix) {
	type feature struct {
		Type       string         `json:"type"`
		Geometry   map[string]any `json:"geometry"`
		Properties map[string]any `json:"properties"`
	}
	fc := struct {
		Type     string    `json:"type"`
		Features []feature `json:"features"`
	}{Type: "FeatureCollection", Features: []feature{}}
	if len(fixes) >= 2 {
		line := make([][2]float64, len(fixes))
		for i, f := range fixes {
			line[i] = [2]float64{f.Fix.Lon, f.Fix.Lat}
		}
		fc.Features = append(fc.Features, feature{Type: "Feature",
			Geometry:   map[string]any{"type": "LineString", "coordinates": line},
			Properties: map[string]any{"truck": truck, "from": fixes[0].Fix.Time, "to": fixes[len(fixes)-1].Fix.Time}})
	}
	for _, f := range fixes {
		p := map[string]any{"truck": truck, "time": f.Fix.Time.UTC().Format(time.RFC3339Nano), "seq": f.Seq,
			"epoch": fmt.Sprintf("%x", f.Epoch[:])}
		opt(p, f.Fix)
		fc.Features = append(fc.Features, feature{Type: "Feature",
			Geometry: map[string]any{"type": "Point", "coordinates": [2]float64{f.Fix.Lon, f.Fix.Lat}}, Properties: p})
	}
	_ = json.NewEncoder(w).Encode(fc)
}

// opt adds the fix's optional fields that the receiver gave.
func opt(p map[string]any, f sdk.Fix) {
	if f.Has&sdk.FixAlt != 0 {
		p["alt_m"] = f.Alt
	}
	if f.Has&sdk.FixSpeed != 0 {
		p["speed_mps"] = f.Speed
	}
	if f.Has&sdk.FixCourse != 0 {
		p["course_deg"] = f.Course
	}
	if f.Has&sdk.FixSats != 0 {
		p["sats"] = f.Sats
	}
	if f.Has&sdk.FixHDOP != 0 {
		p["hdop"] = f.HDOP
	}
}

// writeGPX writes a GPX 1.1 track with one segment holding every fix.
func writeGPX(w io.Writer, truck string, fixes []dispatch.Fix) {
	type trkpt struct {
		Lat  string   `xml:"lat,attr"`
		Lon  string   `xml:"lon,attr"`
		Ele  *float64 `xml:"ele,omitempty"`
		Time string   `xml:"time"`
		Sat  *int     `xml:"sat,omitempty"`
		HDOP *float64 `xml:"hdop,omitempty"`
	}
	type gpx struct {
		XMLName xml.Name `xml:"gpx"`
		Version string   `xml:"version,attr"`
		Creator string   `xml:"creator,attr"`
		NS      string   `xml:"xmlns,attr"`
		Name    string   `xml:"trk>name"`
		Points  []trkpt  `xml:"trk>trkseg>trkpt"`
	}
	g := gpx{Version: "1.1", Creator: "waybill dispatch", NS: "http://www.topografix.com/GPX/1/1", Name: truck}
	for _, f := range fixes {
		p := trkpt{Lat: strconv.FormatFloat(f.Fix.Lat, 'f', -1, 64), Lon: strconv.FormatFloat(f.Fix.Lon, 'f', -1, 64),
			Time: f.Fix.Time.UTC().Format(time.RFC3339Nano)}
		if f.Fix.Has&sdk.FixAlt != 0 {
			v := f.Fix.Alt
			p.Ele = &v
		}
		if f.Fix.Has&sdk.FixSats != 0 {
			v := f.Fix.Sats
			p.Sat = &v
		}
		if f.Fix.Has&sdk.FixHDOP != 0 {
			v := f.Fix.HDOP
			p.HDOP = &v
		}
		g.Points = append(g.Points, p)
	}
	io.WriteString(w, xml.Header)
	enc := xml.NewEncoder(w)
	enc.Indent("", " ")
	_ = enc.Encode(g)
}

// writeCSV writes one row per fix; absent optional fields are empty cells.
func writeCSV(w io.Writer, fixes []dispatch.Fix) {
	c := csv.NewWriter(w)
	_ = c.Write([]string{"time", "lat", "lon", "alt_m", "speed_mps", "course_deg", "mode", "sats", "hdop", "epoch", "seq"})
	f64 := func(ok bool, v float64) string {
		if !ok {
			return ""
		}
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	for _, f := range fixes {
		x := f.Fix
		sats := ""
		if x.Has&sdk.FixSats != 0 {
			sats = strconv.Itoa(x.Sats)
		}
		_ = c.Write([]string{x.Time.UTC().Format(time.RFC3339Nano), f64(true, x.Lat), f64(true, x.Lon),
			f64(x.Has&sdk.FixAlt != 0, x.Alt), f64(x.Has&sdk.FixSpeed != 0, x.Speed),
			f64(x.Has&sdk.FixCourse != 0, x.Course), strconv.Itoa(int(x.Mode)), sats,
			f64(x.Has&sdk.FixHDOP != 0, x.HDOP), fmt.Sprintf("%x", f.Epoch[:]), strconv.FormatUint(f.Seq, 10)})
	}
	c.Flush()
}
