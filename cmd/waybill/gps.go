package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
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
