package transport

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// pahoLogger adapts paho's log.Logger (Println/Printf) to slog at a fixed level.
type pahoLogger struct {
	l      *slog.Logger
	level  slog.Level
	source string
}

func (p pahoLogger) Println(v ...any) {
	if p.l.Enabled(context.Background(), p.level) {
		p.l.Log(context.Background(), p.level, strings.TrimSpace(fmt.Sprintln(v...)), "source", p.source)
	}
}

func (p pahoLogger) Printf(format string, v ...any) {
	if p.l.Enabled(context.Background(), p.level) {
		p.l.Log(context.Background(), p.level, strings.TrimSpace(fmt.Sprintf(format, v...)), "source", p.source)
	}
}
