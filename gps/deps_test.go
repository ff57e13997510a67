package gps_test

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The dependency rules of design.md: gps never imports MQTT, store, sdk, agent or cmd, and only
// gps/serial.go imports the serial package.
func TestImports(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	sub, _ := filepath.Glob("*/*.go")
	for _, f := range append(files, sub...) {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			for _, bad := range []string{"paho", "mochi-mqtt", "waybill/store", "waybill/sdk", "waybill/agent", "waybill/cmd"} {
				if strings.Contains(p, bad) {
					t.Errorf("%s imports %s", f, p)
				}
			}
			if p == "go.bug.st/serial" && f != "serial.go" {
				t.Errorf("%s imports go.bug.st/serial; only serial.go may", f)
			}
		}
	}
}
