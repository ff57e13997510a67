package driver

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// The page's words live in message catalogues, one JSON object per language (i18n/<code>.json, key ->
// text, "{name}" marks a value the page fills in), embedded in the binary like the page itself: the cab may
// be offline, so nothing is fetched. English is the reference: every other language has exactly its keys.
//
//go:embed i18n/*.json
var catalogueFiles embed.FS

// fallbackLanguage is used when neither the driver's choice, the browser's Accept-Language nor
// navigator.languages names a language the page has.
const fallbackLanguage = "en"

var (
	langCode    = regexp.MustCompile(`^[a-z]{2,3}$`)
	placeholder = regexp.MustCompile(`\{[a-z_]+\}`)
)

// loadCatalogues reads and checks the embedded catalogues: language code -> key -> text. A language that
// lacks an English key, has a key English does not, or fills in other values than English is an error,
// so a half-translated page cannot ship (the tests load them too).
func loadCatalogues(fsys fs.FS) (map[string]map[string]string, error) {
	files, err := fs.Glob(fsys, "i18n/*.json")
	if err != nil {
		return nil, err
	}
	cats := map[string]map[string]string{}
	for _, f := range files {
		code := strings.TrimSuffix(path.Base(f), ".json")
		if !langCode.MatchString(code) {
			return nil, fmt.Errorf("driver: catalogue %s: the name must be a lower-case ISO 639 code", f)
		}
		raw, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, err
		}
		var m map[string]string
		dec := json.NewDecoder(bytes.NewReader(raw))
		if err := dec.Decode(&m); err != nil {
			return nil, fmt.Errorf("driver: catalogue %s: %w", f, err)
		}
		for k, v := range m {
			if strings.TrimSpace(v) == "" {
				return nil, fmt.Errorf("driver: catalogue %s: %q is empty", f, k)
			}
		}
		cats[code] = m
	}
	en, ok := cats[fallbackLanguage]
	if !ok {
		return nil, errors.New("driver: no English catalogue (i18n/en.json)")
	}
	for code, m := range cats {
		if d := catalogueDiff(en, m); d != "" {
			return nil, fmt.Errorf("driver: catalogue %s.json does not match en.json: %s", code, d)
		}
	}
	return cats, nil
}

// catalogueDiff describes how other's keys and placeholders differ from ref's; "" when they match.
func catalogueDiff(ref, other map[string]string) string {
	var out []string
	for _, k := range sortedKeys(ref) {
		v, ok := other[k]
		if !ok {
			out = append(out, "missing "+k)
			continue
		}
		want, got := placeholders(ref[k]), placeholders(v)
		if want != got {
			out = append(out, fmt.Sprintf("%s fills in %s, English %s", k, got, want))
		}
	}
	for _, k := range sortedKeys(other) {
		if _, ok := ref[k]; !ok {
			out = append(out, "extra "+k)
		}
	}
	return strings.Join(out, "; ")
}

// placeholders lists a text's {names}, sorted, as one string.
func placeholders(s string) string {
	p := placeholder.FindAllString(s, -1)
	sort.Strings(p)
	return "[" + strings.Join(p, " ") + "]"
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// i18nMarker in page.html is replaced with the catalogues, inline, when the server is built.
const i18nMarker = "<!--i18n-->"

// buildPage puts the catalogues into the page as a JSON script block (not executed; json.Marshal escapes
// '<', so a text cannot end the block).
func buildPage(html []byte, cats map[string]map[string]string) ([]byte, error) {
	if bytes.Count(html, []byte(i18nMarker)) != 1 {
		return nil, fmt.Errorf("driver: page.html must hold %s exactly once", i18nMarker)
	}
	b, err := json.Marshal(cats)
	if err != nil {
		return nil, err
	}
	block := append(append([]byte(`<script id="i18n" type="application/json">`), b...), "</script>"...)
	return bytes.Replace(html, []byte(i18nMarker), block, 1), nil
}

// pickLanguage returns the language of have that an Accept-Language header (RFC 9110, 12.5.4) prefers
// most, by quality and then by order, matching on the primary subtag ("de-AT" is "de"); "" when it names
// none of them (the page then asks navigator.languages, then falls back to English). "*" and q=0 choose
// nothing; a malformed entry is skipped rather than refused, as a browser's header is not the driver's
// fault.
func pickLanguage(header string, have map[string]map[string]string) string {
	best, bestQ := "", 0.0
	// No browser sends more than a few; the rest of a hostile header is not looked at.
	for _, part := range strings.SplitN(header, ",", 64) {
		tag, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		q := 1.0
		if params != "" {
			name, val, ok := strings.Cut(strings.TrimSpace(params), "=")
			if !ok || strings.TrimSpace(strings.ToLower(name)) != "q" {
				continue
			}
			v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
			if err != nil || !(v >= 0 && v <= 1) {
				continue
			}
			q = v
		}
		primary, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(tag)), "-")
		if _, ok := have[primary]; !ok || q <= bestQ {
			continue
		}
		best, bestQ = primary, q
	}
	return best
}
