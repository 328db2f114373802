package dtls

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// pionLogs sends pion's internal logging to slog at debug level: pion logs
// every malformed or unexpected datagram, which on an open port is noise,
// while the handshake outcome is logged by this package itself.
type pionLogs struct{ log *slog.Logger }

func (f pionLogs) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{f.log.With("pion", scope)}
}

type pionLogger struct{ log *slog.Logger }

func (l pionLogger) emit(msg string) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug(msg)
	}
}

func (l pionLogger) emitf(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug(fmt.Sprintf(format, args...))
	}
}

func (l pionLogger) Trace(string)                 {}
func (l pionLogger) Tracef(string, ...any)        {}
func (l pionLogger) Debug(msg string)             { l.emit(msg) }
func (l pionLogger) Debugf(f string, args ...any) { l.emitf(f, args...) }
func (l pionLogger) Info(msg string)              { l.emit(msg) }
func (l pionLogger) Infof(f string, args ...any)  { l.emitf(f, args...) }
func (l pionLogger) Warn(msg string)              { l.emit(msg) }
func (l pionLogger) Warnf(f string, args ...any)  { l.emitf(f, args...) }
func (l pionLogger) Error(msg string)             { l.emit(msg) }
func (l pionLogger) Errorf(f string, args ...any) { l.emitf(f, args...) }
