package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/waybill-iot/waybill/gps"
	"github.com/waybill-iot/waybill/gps/gpssim"
)

func runGPS(ctx context.Context, s streams, args []string) error {
	if len(args) == 0 {
		gpsUsage(s.err)
		return usageError{"missing subcommand"}
	}
	switch args[0] {
	case "decode":
		return runGPSDecode(ctx, s, args[1:])
	case "sim":
		return runGPSSim(ctx, s, args[1:])
	case "sky":
		return runGPSSky(ctx, s, args[1:])
	case "-h", "--help", "help":
		gpsUsage(s.out)
		return nil
	}
	gpsUsage(s.err)
	return usageError{fmt.Sprintf("unknown subcommand %q", args[0])}
}

func gpsUsage(w io.Writer) {
	fmt.Fprintln(w, "Usage: waybill gps SUBCOMMAND [FLAGS]")
	fmt.Fprintln(w, "  decode FILE   print one JSON object per fix (FILE - reads stdin)")
	fmt.Fprintln(w, "  sim           write simulated or replayed NMEA to a pseudo-terminal or a file")
	fmt.Fprintln(w, "  sky           satellites in view, SNR, fix mode and DOPs, from a receiver, gpsd, a capture or the agent")
}

func newFlagSet(s streams, name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(s.err)
	fs.Usage = func() {
		fmt.Fprintln(s.err, usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses and turns flag errors into usage errors (exit 2); --help is flag.ErrHelp (exit 0).
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	return nil
}

func runGPSDecode(_ context.Context, s streams, args []string) error {
	fs := newFlagSet(s, "gps decode", "Usage: waybill gps decode [FLAGS] FILE\n\n"+
		"Decodes an NMEA capture (FILE, or - for stdin) and prints one JSON object per fix:\n"+
		`{"time","lat","lon","alt_m","speed_mps","course_deg","mode","sats","hdop"}, absent fields omitted.`)
	floor := fs.String("rollover-floor", "", "dates before this (YYYY-MM-DD) are moved forward by 1024 weeks (default "+
		gps.DefaultRolloverFloor.Format(time.DateOnly)+"; 1980-01-06 keeps the receiver's dates)")
	stats := fs.Bool("stats", false, "print the decoding counters to stderr at the end")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{"want exactly one FILE (or -)"}
	}
	var cfg gps.Config
	if *floor != "" {
		t, err := time.Parse(time.DateOnly, *floor)
		if err != nil {
			return usageError{fmt.Sprintf("--rollover-floor: %v", err)}
		}
		cfg.RolloverFloor = t
	}
	var in io.Reader = s.in
	if name := fs.Arg(0); name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	r := gps.NewReader(in, cfg)
	w := bufio.NewWriter(s.out)
	for {
		fix, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil && !errors.Is(err, gps.ErrNoData) {
			w.Flush()
			return err
		}
		if err != nil {
			continue
		}
		b, _ := fix.MarshalJSON()
		w.Write(b)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if *stats {
		fmt.Fprintf(s.err, "%+v\n", r.Stats())
	}
	return nil
}

func runGPSSim(ctx context.Context, s streams, args []string) error {
	fs := newFlagSet(s, "gps sim", "Usage: waybill gps sim [FLAGS]\n\n"+
		"Writes NMEA at real speed, from a synthetic delivery route or a capture, onto a new\n"+
		"pseudo-terminal (its path is printed on stdout) or into a file, until interrupted.")
	usePTY := fs.Bool("pty", true, "create a pseudo-terminal and print its path (the default output)")
	out := fs.String("out", "", "write to this file instead of a pseudo-terminal (- for stdout)")
	capture := fs.String("capture", "", "replay this NMEA capture instead of the synthetic route")
	rate := fs.Float64("rate", 1, "synthetic route: fixes per second")
	speedup := fs.Float64("speedup", 1, "run this many times faster than real time")
	start := fs.String("start", "", "synthetic route: depot as LAT,LON (default "+
		fmt.Sprintf("%g,%g", gpssim.DefaultStart.Lat, gpssim.DefaultStart.Lon)+")")
	seed := fs.Uint64("seed", 1, "synthetic route: seed for streets, stops and lost fixes")
	at := fs.String("time", "", "synthetic route: GPS time of the first fix, RFC 3339 (default now)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError{"no arguments expected"}
	}
	if *rate <= 0 || *speedup <= 0 {
		return usageError{"--rate and --speedup must be positive"}
	}
	cfg := gpssim.Config{Rate: *rate, Speedup: *speedup, Route: gpssim.RouteConfig{Seed: *seed}}
	if *start != "" {
		lat, lon, ok := strings.Cut(*start, ",")
		la, err1 := strconv.ParseFloat(strings.TrimSpace(lat), 64)
		lo, err2 := strconv.ParseFloat(strings.TrimSpace(lon), 64)
		if !ok || err1 != nil || err2 != nil || la < -85 || la > 85 || lo < -180 || lo > 180 {
			return usageError{fmt.Sprintf("--start %q: want LAT,LON in degrees", *start)}
		}
		cfg.Route.Start = gpssim.LatLon{Lat: la, Lon: lo}
	}
	if *at != "" {
		t, err := time.Parse(time.RFC3339, *at)
		if err != nil {
			return usageError{fmt.Sprintf("--time: %v", err)}
		}
		cfg.Start = t
	}

	var w io.Writer
	switch {
	case *out == "-":
		w = s.out
	case *out != "":
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	case *usePTY:
		p, err := gpssim.OpenPTY()
		if err != nil {
			return err
		}
		fmt.Fprintln(s.out, p.Path)
		// Closing the pty is what releases a write blocked on a full buffer (nobody reading).
		var once sync.Once
		closePTY := func() { once.Do(func() { p.Close() }) }
		stop := context.AfterFunc(ctx, closePTY)
		defer stop()
		defer closePTY()
		w = p.Master
	default:
		return usageError{"--pty=false needs --out FILE"}
	}

	var err error
	if *capture != "" {
		err = replayCapture(ctx, w, *capture, *speedup)
	} else {
		err = gpssim.New(cfg).Run(ctx, w)
	}
	if ctx.Err() != nil {
		return nil // interrupted: the normal way to stop
	}
	return err
}

// replayCapture copies a capture to w at the receiver's pace, once.
func replayCapture(ctx context.Context, w io.Writer, path string, speed float64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, gps.NewPacedReader(ctx, f, speed))
	return err
}

func runGPSSky(ctx context.Context, s streams, args []string) error {
	fs := newFlagSet(s, "gps sky", "Usage: waybill gps sky (--device DEV | --gpsd ADDR | --replay FILE | --agent URL) [FLAGS]\n\n"+
		"Shows the receiver's satellites in view (PRN, system, elevation, azimuth, SNR, used in the fix), the fix\n"+
		"mode and HDOP/PDOP/VDOP, from its GSV and GSA sentences (gpsd: its SKY reports), as cgps does. On a\n"+
		"terminal the view is redrawn in place; otherwise it is printed once per receiver epoch. While\n"+
		"waybill-agent runs it holds the serial port: use --agent http://127.0.0.1:8080 to read its view.")
	device := fs.String("device", "", "serial device of the receiver (e.g. /dev/ttyACM0); not while the agent runs")
	baud := fs.Int("baud", 0, "with --device: line rate; 0 tries "+fmt.Sprint(gps.AutoBauds))
	gpsdAddr := fs.String("gpsd", "", "gpsd's host:port (e.g. localhost:2947)")
	replay := fs.String("replay", "", "an NMEA capture file")
	speed := fs.Float64("speed", 0, "with --replay: 1 plays at the receiver's pace, 0 as fast as possible")
	agentURL := fs.String("agent", "", "a running waybill-agent's local listener, e.g. http://127.0.0.1:8080")
	token := fs.String("token", os.Getenv("WAYBILL_HTTP_TOKEN"), "with --agent: the agent's http.token (env WAYBILL_HTTP_TOKEN)")
	asJSON := fs.Bool("json", false, "print one JSON object per view")
	once := fs.Bool("once", false, "print the first complete view and exit")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError{"no arguments expected"}
	}
	n := 0
	for _, v := range []string{*device, *gpsdAddr, *replay, *agentURL} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return usageError{"give exactly one source: --device, --gpsd, --replay or --agent"}
	}
	if *baud < 0 || *speed < 0 {
		return usageError{"--baud and --speed cannot be negative"}
	}
	v := &skyViewer{w: s.out, json: *asJSON, live: isTerminal(s.out)}
	show := func(sky gps.Sky) (bool, error) {
		if sky.Updates == 0 || sky.Updates == v.last {
			return false, nil
		}
		v.last = sky.Updates
		return *once, v.render(sky)
	}
	switch {
	case *replay != "":
		f, err := os.Open(*replay)
		if err != nil {
			return err
		}
		defer f.Close()
		var in io.Reader = f
		if *speed > 0 {
			in = gps.NewPacedReader(ctx, f, *speed)
		}
		r := gps.NewReader(in, gps.Config{})
		for {
			_, err := r.Next()
			if r.SkyUpdates() != 0 {
				if done, werr := show(r.Sky()); werr != nil || done {
					return werr
				}
			}
			if err != nil && !errors.Is(err, gps.ErrNoData) {
				if err == io.EOF || ctx.Err() != nil {
					if v.last == 0 {
						return fmt.Errorf("%s: no GSV or GSA sentence: the receiver sends no satellite data (enable GSV/GSA in its configuration)", *replay)
					}
					return nil
				}
				return err
			}
		}
	case *agentURL != "":
		return pollSky(ctx, time.Second, show, func(ctx context.Context) (gps.Sky, error) {
			return agentSky(ctx, *agentURL, *token)
		})
	}
	var src interface {
		Run(context.Context, chan<- gps.Fix) error
		Sky() gps.Sky
		Health() gps.Health
	}
	if *device != "" {
		src = gps.NewSerial(gps.SerialConfig{Device: *device, Baud: *baud})
	} else {
		src = gps.NewGPSD(gps.GPSDConfig{Addr: *gpsdAddr})
	}
	rctx, cancel := context.WithCancel(ctx)
	fixes := make(chan gps.Fix, 16)
	done := make(chan error, 1)
	go func() { done <- src.Run(rctx, fixes) }()
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for range fixes { // the view comes from Sky; the fixes are not needed
		}
	}()
	err := pollSky(rctx, 200*time.Millisecond, show, func(context.Context) (gps.Sky, error) { return src.Sky(), nil })
	cancel()
	<-done    // Run returned: it closed fixes,
	<-drained // which ended the drain
	if err == nil && ctx.Err() == nil && v.last == 0 {
		if h := src.Health(); h.LastError != "" {
			return errors.New(h.LastError)
		}
	}
	return err
}

// pollSky shows the view from get every interval until ctx ends or show says it is done. Interrupting is
// the normal way to stop: it returns nil then.
func pollSky(ctx context.Context, every time.Duration, show func(gps.Sky) (bool, error), get func(context.Context) (gps.Sky, error)) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		sky, err := get(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if done, err := show(sky); err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// agentSky reads a running agent's GET /sky.
func agentSky(ctx context.Context, base, token string) (gps.Sky, error) {
	u, err := url.Parse(strings.TrimRight(base, "/") + "/sky")
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return gps.Sky{}, usageError{fmt.Sprintf("--agent %q: want the agent's listener as a URL, e.g. http://127.0.0.1:8080", base)}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return gps.Sky{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return gps.Sky{}, fmt.Errorf("%w (is waybill-agent running, and http.listen %s?)", err, u.Host)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized:
		return gps.Sky{}, fmt.Errorf("GET %s: %s: give the agent's http.token with --token or WAYBILL_HTTP_TOKEN", u, resp.Status)
	default:
		return gps.Sky{}, fmt.Errorf("GET %s: %s (an agent older than this command has no /sky)", u, resp.Status)
	}
	var sky gps.Sky
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&sky); err != nil {
		return gps.Sky{}, fmt.Errorf("GET %s: %w", u, err)
	}
	return sky, nil
}

// isTerminal reports whether w is a terminal (a character device), where the view is redrawn in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// skyViewer prints sky views: JSON lines, a table per view, or on a terminal one table redrawn in place.
type skyViewer struct {
	w    io.Writer
	json bool
	live bool
	last uint64 // Updates of the last view shown
}

func (v *skyViewer) render(sky gps.Sky) error {
	if v.json {
		b, err := json.Marshal(sky)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(v.w, "%s\n", b)
		return err
	}
	var b strings.Builder
	if v.live {
		b.WriteString("\x1b[H\x1b[2J") // home and clear: redraw in place, as cgps
	}
	mode := map[gps.Mode]string{0: "unknown", gps.ModeNoFix: "no fix", gps.Mode2D: "2D", gps.Mode3D: "3D"}[sky.Mode]
	dop := func(x float64) string {
		if math.IsNaN(x) {
			return "-"
		}
		return strconv.FormatFloat(x, 'f', 2, 64)
	}
	fmt.Fprintf(&b, "fix %s  HDOP %s  PDOP %s  VDOP %s  satellites: %d in view, %d used  (view %d)\n",
		mode, dop(sky.HDOP), dop(sky.PDOP), dop(sky.VDOP), len(sky.Satellites), sky.Used(), sky.Updates)
	fmt.Fprintf(&b, "%5s  %-8s %3s %4s %4s  %s\n", "PRN", "SYSTEM", "EL", "AZ", "SNR", "USED")
	num := func(x int) string {
		if x < 0 {
			return "-"
		}
		return strconv.Itoa(x)
	}
	for _, s := range sky.Satellites {
		used, snr := "", "-"
		if s.Used {
			used = "Y"
		}
		if s.SNR > 0 {
			snr = strconv.Itoa(s.SNR)
		}
		fmt.Fprintf(&b, "%5d  %-8s %3s %4s %4s  %s\n", s.PRN, s.Constellation, num(s.Elevation), num(s.Azimuth), snr, used)
	}
	if !v.live {
		b.WriteString("\n")
	}
	_, err := io.WriteString(v.w, b.String())
	return err
}
