package driver

import (
	"net/url"
	"testing"
)

// TestGeoURI (issue 11, 10.3): the navigate link is a geo: URI (RFC 5870) with the q parameter naming the
// pin; the label is percent-encoded so no character of it (space, parenthesis, '&', '#', '?', non-ASCII)
// can end the label or the URI early, and the coordinates have no exponent and no "-0".
func TestGeoURI(t *testing.T) {
	for _, tc := range []struct {
		lat, lon float64
		label    string
		want     string
	}{
		{52.52, 13.405, "Ada Lovelace", "geo:52.52,13.405?q=52.52,13.405(Ada%20Lovelace)"},
		{-33.8688197, 151.2092955, "x", "geo:-33.86882,151.209296?q=-33.86882,151.209296(x)"},
		{0.00000001, -0.0000001, "a", "geo:0,0?q=0,0(a)"},
		{1e-5, -179.5, "a", "geo:0.00001,-179.5?q=0.00001,-179.5(a)"},
		{48.1, 11.5, "Gate (3) & Co #2? 50%", "geo:48.1,11.5?q=48.1,11.5(Gate%20%283%29%20%26%20Co%20%232%3F%2050%25)"},
		{48.1, 11.5, "Müller, Straße 1", "geo:48.1,11.5?q=48.1,11.5(M%C3%BCller%2C%20Stra%C3%9Fe%201)"},
		{48.1, 11.5, "a+b=c/d\\e", "geo:48.1,11.5?q=48.1,11.5(a%2Bb%3Dc%2Fd%5Ce)"},
	} {
		got := geoURI(tc.lat, tc.lon, tc.label)
		if got != tc.want {
			t.Errorf("geoURI(%v, %v, %q) = %s, want %s", tc.lat, tc.lon, tc.label, got, tc.want)
			continue
		}
		// What a navigation app reads back is the label we gave.
		u, err := url.Parse(got)
		if err != nil || u.Scheme != "geo" {
			t.Errorf("%s does not parse as a geo: URI: %v", got, err)
			continue
		}
		q := u.Query().Get("q")
		open := len(q) - len(tc.label) - 2
		if open < 0 || q[open] != '(' || q[len(q)-1] != ')' || q[open+1:len(q)-1] != tc.label {
			t.Errorf("%s: q decodes to %q, want the label %q in parentheses", got, q, tc.label)
		}
	}
	for _, tc := range []struct{ recipient, address, id, want string }{
		{"Ada Lovelace", "12 Analytical Row", "o-1", "Ada Lovelace, 12 Analytical Row"},
		{"", " 12  Analytical\nRow ", "o-1", "12 Analytical Row"},
		{"Ada", "", "o-1", "Ada"},
		{" ", "", "o-1", "o-1"},
	} {
		if got := navLabel(tc.recipient, tc.address, tc.id); got != tc.want {
			t.Errorf("navLabel(%q, %q, %q) = %q, want %q", tc.recipient, tc.address, tc.id, got, tc.want)
		}
	}
}

// TestOrderViewHasGeoURI: the hook gives integrators the same link as the page.
func TestOrderViewHasGeoURI(t *testing.T) {
	f := newFixture(t, nil)
	o := newOrder("o-geo", 1)
	o.Recipient, o.Address, o.Lat, o.Lon = "Ada (Gate 3)", "12 Analytical Row", 52.519, 13.407
	f.send(o)
	var v OrderView
	f.do("GET", "/api/orders/o-geo", "").json(t, &v)
	if want := "geo:52.519,13.407?q=52.519,13.407(Ada%20%28Gate%203%29%2C%2012%20Analytical%20Row)"; v.GeoURI != want {
		t.Fatalf("geo_uri = %q, want %q", v.GeoURI, want)
	}
}
