package driver

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"
)

// TestCataloguesComplete (issue 11, 10.4): every language has exactly English's keys, with the same {values}
// to fill in and no empty text, and there is a language besides English.
func TestCataloguesComplete(t *testing.T) {
	cats, err := loadCatalogues(catalogueFiles)
	if err != nil {
		t.Fatal(err)
	}
	if len(cats) < 2 {
		t.Fatalf("languages: %d, want English and at least one more", len(cats))
	}
	en := cats["en"]
	for code, m := range cats {
		for k := range en {
			if _, ok := m[k]; !ok {
				t.Errorf("%s.json lacks %q", code, k)
			}
		}
		for k := range m {
			if _, ok := en[k]; !ok {
				t.Errorf("%s.json has %q, which en.json lacks", code, k)
			}
		}
		if code != "en" && m["lang.name"] == en["lang.name"] {
			t.Errorf("%s.json names itself %q", code, m["lang.name"])
		}
	}
	// A translation that copied English is not one: most texts differ (a few, like "OK" or "N", may not).
	de := cats["de"]
	same := 0
	for k, v := range en {
		if de[k] == v {
			same++
		}
	}
	if same > len(en)/5 {
		t.Errorf("de.json: %d of %d texts are the English ones", same, len(en))
	}
}

// TestCataloguesRefuseMismatch: a catalogue that lacks a key, adds one, fills in other values, is empty or
// misnamed does not load, so New fails rather than serve a half-translated page.
func TestCataloguesRefuseMismatch(t *testing.T) {
	en := `{"a": "Hello {name}", "b": "Bye"}`
	for name, tc := range map[string]struct {
		files map[string]string
		want  string
	}{
		"missing key":     {map[string]string{"en": en, "de": `{"a": "Hallo {name}"}`}, "missing b"},
		"extra key":       {map[string]string{"en": en, "de": `{"a": "Hallo {name}", "b": "Tschüss", "c": "x"}`}, "extra c"},
		"placeholder":     {map[string]string{"en": en, "de": `{"a": "Hallo {nom}", "b": "Tschüss"}`}, "a fills in [{nom}], English [{name}]"},
		"empty text":      {map[string]string{"en": en, "de": `{"a": "Hallo {name}", "b": " "}`}, `"b" is empty`},
		"no English":      {map[string]string{"de": `{"a": "x"}`}, "no English"},
		"bad name":        {map[string]string{"en": en, "de_DE": en}, "ISO 639"},
		"not JSON object": {map[string]string{"en": `["a"]`}, "i18n/en.json"},
	} {
		fsys := fstest.MapFS{}
		for code, body := range tc.files {
			fsys["i18n/"+code+".json"] = &fstest.MapFile{Data: []byte(body)}
		}
		_, err := loadCatalogues(fsys)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one saying %q", name, err, tc.want)
		}
	}
}

// TestPickLanguage: Accept-Language picks the most preferred language the page has, by quality then order,
// on the primary subtag; nothing it has, "*" or q=0 picks none (the page then asks navigator.languages).
func TestPickLanguage(t *testing.T) {
	have := map[string]map[string]string{"en": nil, "de": nil}
	for header, want := range map[string]string{
		"":                                "",
		"de":                              "de",
		"de-AT":                           "de",
		"DE-de":                           "de",
		"en-US,en;q=0.9":                  "en",
		"fr-FR, fr;q=0.9, de;q=0.8":       "de",
		"fr, en;q=0.3, de;q=0.7":          "de",
		"en;q=0.5, de;q=0.5":              "en",
		"de;q=0, en;q=0.1":                "en",
		"de;q=0":                          "",
		"*":                               "",
		"es, pt":                          "",
		"de;q=abc, en":                    "en",
		"de;q=2, en;q=0.4":                "en",
		"de;level=1":                      "",
		" ,, ;q=1, de ; q = 0.9 ":         "de",
		strings.Repeat("xx,", 100) + "de": "",
	} {
		if got := pickLanguage(header, have); got != want {
			t.Errorf("pickLanguage(%q) = %q, want %q", header, got, want)
		}
	}
}

// TestPageCarriesCatalogues: the page carries every catalogue in a JSON block that no text can end early,
// and a request's Accept-Language sets the page's language.
func TestPageCarriesCatalogues(t *testing.T) {
	evil := map[string]map[string]string{"en": {"x": "</script><script>alert(1)</script>"}}
	b, err := buildPage([]byte("<head>"+i18nMarker+"</head>"), evil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(b), "</script>") != 1 {
		t.Fatalf("a text ended the catalogue block: %s", b)
	}
	if _, err := buildPage([]byte("<head></head>"), evil); err == nil {
		t.Fatal("a page without the marker was accepted")
	}

	f := newFixture(t, nil)
	r := f.do("GET", "/", "", "Accept-Language", "de-CH, de;q=0.9, en;q=0.8")
	if !strings.Contains(string(r.body), `<html lang="de" data-accept="de">`) || r.header.Get("Vary") != "Accept-Language" {
		t.Fatalf("German request: Vary %q, page starts %.80q", r.header.Get("Vary"), r.body)
	}
	if r := f.do("GET", "/", "", "Accept-Language", "fr"); !strings.Contains(string(r.body), `<html lang="en">`) {
		t.Fatalf("French request: page starts %.80q", r.body)
	}
	m := regexp.MustCompile(`<script id="i18n" type="application/json">(.*?)</script>`).FindSubmatch(r.body)
	if m == nil {
		t.Fatal("the page has no catalogue block")
	}
	var cats map[string]map[string]string
	if err := json.Unmarshal(m[1], &cats); err != nil {
		t.Fatal(err)
	}
	if cats["de"]["btn.delivered"] != "Zugestellt" || cats["en"]["btn.delivered"] != "Delivered" {
		t.Fatalf("catalogues in the page: %v", cats)
	}
}

var (
	scriptRe  = regexp.MustCompile(`(?s)<script>(.*?)</script>`)
	styleRe   = regexp.MustCompile(`(?s)<style>(.*?)</style>`)
	commentRe = regexp.MustCompile(`(?s)<!--.*?-->`)
	tagRe     = regexp.MustCompile(`(?s)<[^>]*>`)
	attrRe    = regexp.MustCompile(`\s(placeholder|title|aria-label|alt|value|label)="([^"]*)"`)
	i18nAttr  = regexp.MustCompile(`\sdata-i18n[a-z-]*="([^"]*)"`)
	keyLike   = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$`)
	classRe   = regexp.MustCompile(`\.([a-z][a-z0-9-]*)`)
	letters   = regexp.MustCompile(`\pL`)
	capWord   = regexp.MustCompile(`\p{Lu}\p{Ll}|\b[A-Z]{2,}\b`)
	twoWords  = regexp.MustCompile(`\pL{2,}[\s,;:]+\pL{2,}`)
	sentence  = regexp.MustCompile(`\pL[.!?…]\s*$`)
	wordRe    = regexp.MustCompile(`\pL[\pL-]*`)
)

// codeStrings are the script's string literals that are code, not words for the driver.
var codeStrings = map[string]bool{"use strict": true, "Content-Type": true, "Idempotency-Key": true, "POST": true}

// brand is the one word the page may show in every language.
const brand = "Waybill"

// hardCodedText lists the user-visible texts of an HTML page that do not come from the catalogue, by a
// heuristic: outside scripts and styles, any text but the brand or any letter in a visible attribute; in
// the script, any string literal (comments aside) that is not a catalogue key and has a capitalised word
// or an acronym, two words that are not both CSS classes of the page, or ends like a sentence. A lower-case
// single word ("failed") cannot be told from an identifier and passes.
func hardCodedText(html string) []string {
	var bad []string
	var classes = map[string]bool{}
	for _, m := range styleRe.FindAllStringSubmatch(html, -1) {
		for _, c := range classRe.FindAllStringSubmatch(m[1], -1) {
			classes[c[1]] = true
		}
	}
	markup := commentRe.ReplaceAllString(styleRe.ReplaceAllString(scriptRe.ReplaceAllString(html, "<script></script>"), ""), "")
	for _, m := range attrRe.FindAllStringSubmatch(markup, -1) {
		if letters.MatchString(m[2]) {
			bad = append(bad, m[1]+`="`+m[2]+`"`)
		}
	}
	for _, text := range strings.Split(tagRe.ReplaceAllString(markup, "\n"), "\n") {
		if text = strings.TrimSpace(text); text != "" && text != brand && letters.MatchString(text) {
			bad = append(bad, text)
		}
	}
	for _, m := range scriptRe.FindAllStringSubmatch(html, -1) {
		for _, s := range jsStrings(m[1]) {
			if keyLike.MatchString(s) || codeStrings[s] || !letters.MatchString(s) {
				continue
			}
			allClasses := true
			for _, w := range wordRe.FindAllString(s, -1) {
				allClasses = allClasses && classes[w]
			}
			if capWord.MatchString(s) || sentence.MatchString(s) || (twoWords.MatchString(s) && !allClasses) {
				bad = append(bad, s)
			}
		}
	}
	return bad
}

// jsStrings returns a script's string literals (”, "" and “), skipping comments and regular expressions.
func jsStrings(src string) []string {
	var out []string
	prev := byte('(') // the last significant character, to tell a regular expression from a division
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch {
		case c == '/' && i+1 < len(src) && src[i+1] == '/':
			j := strings.IndexByte(src[i:], '\n')
			if j < 0 {
				return out
			}
			i += j
			continue
		case c == '/' && i+1 < len(src) && src[i+1] == '*':
			j := strings.Index(src[i+2:], "*/")
			if j < 0 {
				return out
			}
			i += j + 3
			continue
		case c == '/' && strings.IndexByte("(,=:[!&|?{};+", prev) >= 0:
			inClass := false
			for i++; i < len(src); i++ {
				switch src[i] {
				case '\\':
					i++
				case '[':
					inClass = true
				case ']':
					inClass = false
				}
				if src[i] == '/' && !inClass {
					break
				}
			}
		case c == '"' || c == '\'' || c == '`':
			var b strings.Builder
			for i++; i < len(src) && src[i] != c; i++ {
				if src[i] == '\\' && i+1 < len(src) {
					i++
				}
				b.WriteByte(src[i])
			}
			out = append(out, b.String())
		}
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			prev = src[i]
		}
	}
	return out
}

// TestPageHasNoHardCodedText (issue 11, 10.4): every word the driver reads comes from the catalogue: no
// English text is left in page.html outside it, every key the page uses is in the catalogue, and every
// key of the catalogue is used. The heuristic itself finds the strings the page had before.
func TestPageHasNoHardCodedText(t *testing.T) {
	for _, sample := range []string{
		`<button id="dlg-cancel" type="button">Back</button>`,
		`<input id="dlg-reason" placeholder="Or type it here">`,
		`<script>wh.append(el("span", "dist", "No GPS fix: distance unknown"));</script>`,
		`<script>g.textContent = "GPS: no fix";</script>`,
		`<script>g.textContent = age < 120 ? "GPS: " + age : 'x';</script>`,
		`<script>const b = el("button", null, "OK");</script>`,
		"<script>$(\"dlg-ok\").textContent = `Saving…`;</script>",
		`<script>notice("the agent is gone.");</script>`,
		`<style>.pill{}</style><script>x("pill no fix");</script>`,
	} {
		if bad := hardCodedText(sample); len(bad) == 0 {
			t.Errorf("the heuristic missed the text in %s", sample)
		}
	}

	html := string(page)
	if bad := hardCodedText(html); len(bad) > 0 {
		t.Errorf("page.html shows text that is not in the catalogue:\n%s", strings.Join(bad, "\n"))
	}
	cats, err := loadCatalogues(catalogueFiles)
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, m := range scriptRe.FindAllStringSubmatch(html, -1) {
		for _, s := range jsStrings(m[1]) {
			if keyLike.MatchString(s) {
				used[s] = true
			}
		}
	}
	for _, m := range i18nAttr.FindAllStringSubmatch(html, -1) {
		used[m[1]] = true
	}
	for k := range used {
		if _, ok := cats["en"][k]; !ok {
			t.Errorf("page.html uses %q, which en.json lacks", k)
		}
	}
	for k := range cats["en"] {
		if !used[k] {
			t.Errorf("en.json has %q, which page.html never uses", k)
		}
	}
}
