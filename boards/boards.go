package boards

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
)

//go:embed */profile.toml
var profiles embed.FS

// Profile is one board's facts.
type Profile struct {
	Name         string `toml:"name"`
	Description  string `toml:"description"`
	GOARCH       string `toml:"goarch"`
	GOARM        int    `toml:"goarm"`         // 0 unless GOARCH is arm
	SerialDevice string `toml:"serial_device"` // the GPS receiver
	Baud         string `toml:"baud"`          // "auto" or a rate such as "9600"
	ButtonChip   string `toml:"button_chip"`   // GPIO character device, e.g. gpiochip0
	ButtonLine   int    `toml:"button_line"`   // -1: no button
	LEDChip      string `toml:"led_chip"`
	LEDLine      int    `toml:"led_line"` // -1: no LED
	// IgnitionChip and IgnitionLine are the ignition-sense input, a digital input the board documents;
	// IgnitionLine -1: none (trips follow movement).
	IgnitionChip string `toml:"ignition_chip"`
	IgnitionLine int    `toml:"ignition_line"`
	DataDir      string `toml:"data_dir"`
	Service      string `toml:"service"` // "systemd" or "procd"
}

// Names lists the known boards, sorted.
func Names() []string {
	dirs, _ := fs.ReadDir(profiles, ".")
	var out []string
	for _, d := range dirs {
		if d.IsDir() {
			out = append(out, d.Name())
		}
	}
	sort.Strings(out)
	return out
}

// ErrUnknownBoard: Lookup was given a name that is not a directory of boards/.
var ErrUnknownBoard = errors.New("boards: unknown board")

// Lookup returns the named board's profile. An unknown name wraps ErrUnknownBoard, names the closest board
// ("rpi-4": did you mean rpi4?) and lists them all.
func Lookup(name string) (Profile, error) {
	raw, err := profiles.ReadFile(path.Join(name, "profile.toml"))
	if err != nil || name == "" || strings.ContainsAny(name, "/.") {
		hint := ""
		if c := closest(name, Names()); c != "" {
			hint = "did you mean " + c + "? "
		}
		return Profile{}, fmt.Errorf("%w %q (%sknown: %s)", ErrUnknownBoard, name, hint, strings.Join(Names(), ", "))
	}
	var p Profile
	md, err := toml.Decode(string(raw), &p)
	if err != nil {
		return Profile{}, fmt.Errorf("boards: %s/profile.toml: %w", name, err)
	}
	if un := md.Undecoded(); len(un) > 0 {
		return Profile{}, fmt.Errorf("boards: %s/profile.toml: unknown keys %v", name, un)
	}
	if err := p.validate(name); err != nil {
		return Profile{}, err
	}
	return p, nil
}

func (p Profile) validate(dir string) error {
	var problems []string
	if p.Name != dir {
		problems = append(problems, fmt.Sprintf("name %q differs from its directory", p.Name))
	}
	switch {
	case p.GOARCH == "arm" && (p.GOARM < 5 || p.GOARM > 7):
		problems = append(problems, fmt.Sprintf("goarm %d: want 5, 6 or 7", p.GOARM))
	case p.GOARCH != "arm" && p.GOARM != 0:
		problems = append(problems, "goarm is only for goarch arm")
	case p.GOARCH != "arm" && p.GOARCH != "arm64" && p.GOARCH != "amd64":
		problems = append(problems, fmt.Sprintf("goarch %q: want arm, arm64 or amd64", p.GOARCH))
	}
	if !strings.HasPrefix(p.SerialDevice, "/dev/") {
		problems = append(problems, fmt.Sprintf("serial_device %q is not under /dev", p.SerialDevice))
	}
	if p.Baud != "auto" && strings.Trim(p.Baud, "0123456789") != "" {
		problems = append(problems, fmt.Sprintf("baud %q: want auto or a number", p.Baud))
	}
	for _, l := range []struct {
		what, chip string
		line       int
	}{{"button", p.ButtonChip, p.ButtonLine}, {"led", p.LEDChip, p.LEDLine}, {"ignition", p.IgnitionChip, p.IgnitionLine}} {
		if l.line >= 0 && !strings.HasPrefix(l.chip, "gpiochip") {
			problems = append(problems, fmt.Sprintf("%s_line %d needs %s_chip, like gpiochip0", l.what, l.line, l.what))
		}
	}
	if !path.IsAbs(p.DataDir) {
		problems = append(problems, fmt.Sprintf("data_dir %q is not absolute", p.DataDir))
	}
	if p.Service != "systemd" && p.Service != "procd" {
		problems = append(problems, fmt.Sprintf("service %q: want systemd or procd", p.Service))
	}
	if len(problems) > 0 {
		return fmt.Errorf("boards: %s/profile.toml: %s", dir, strings.Join(problems, "; "))
	}
	return nil
}

// closest returns the name fewest edits from s, if a third of it or less differs (ignoring case, '-' and
// '_': "RPi_4" is rpi4).
func closest(s string, names []string) string {
	norm := func(s string) string {
		return strings.NewReplacer("-", "", "_", "", " ", "").Replace(strings.ToLower(s))
	}
	best, bestDist := "", len(norm(s))/3+1
	for _, n := range names {
		if d := EditDistance(norm(s), norm(n)); d < bestDist {
			best, bestDist = n, d
		}
	}
	return best
}

// EditDistance is the Levenshtein distance between a and b: the board names' and the agent's config keys'
// "did you mean" suggestions.
func EditDistance(a, b string) int {
	prev, cur := make([]int, len(b)+1), make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
