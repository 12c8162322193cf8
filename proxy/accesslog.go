package proxy

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/gatehouse/gatehouse/metrics"
)

// requestNote is filled in while a request is served and read by the
// access log when it is done.
type requestNote struct {
	user    string
	handler string // metrics label: which of Gatehouse's handlers served it
	// forward is the identity the gate let this request pass with (see
	// Handler.gate); nil for a request that passed without one.
	forward *forwarded
}

const noteKey ctxKey = 1

func noteUser(ctx context.Context, user string) {
	if n, ok := ctx.Value(noteKey).(*requestNote); ok {
		n.user = user
	}
}

// statusRecorder remembers the status code. It unwraps to the underlying
// writer so http.ResponseController can still flush (SSE) and hijack
// (WebSocket) through it.
type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += int64(n)
	return n, err
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func noteHandler(ctx context.Context, name string) {
	if n, ok := ctx.Value(noteKey).(*requestNote); ok {
		n.handler = name
	}
}

// observed is what Observe keeps of one request.
type observed struct {
	note requestNote
	rec  statusRecorder
}

// Observe logs one line per request (method, path — never the
// query, which may hold codes or tokens —, status, duration, user) and
// counts it in the metrics by handler name.
func Observe(next http.Handler, log *slog.Logger, trusted []netip.Prefix, m *metrics.Metrics) http.Handler {
	tp := trustedProxies(trusted)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		// The note and the recorder in one allocation.
		o := &observed{rec: statusRecorder{ResponseWriter: w}}
		note, rec := &o.note, &o.rec
		next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), noteKey, note)))
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		elapsed := time.Since(start)
		if note.handler == "" {
			note.handler = "other"
		}
		m.Request(note.handler, rec.status, elapsed)
		// Kubernetes probes every few seconds: their lines are debug, so
		// they do not drown the requests people make.
		level := slog.LevelInfo
		if note.handler == "ping" || note.handler == "ready" {
			level = slog.LevelDebug
		}
		if !log.Enabled(r.Context(), level) {
			return
		}
		// Typed attributes: no boxing of each value on every request.
		log.LogAttrs(r.Context(), level, "request",
			slog.String("event", "access"),
			slog.String("method", r.Method),
			slog.String("path", logPath(r)),
			slog.Int("status", rec.status),
			slog.Int64("bytes", rec.bytes),
			slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
			slog.String("user", note.user),
			slog.String("handler", note.handler),
			slog.String("client", tp.clientIP(r)),
		)
	})
}

// logPath is the request's path as received (escaped, so control
// characters cannot forge log lines), cut to a readable length. The
// query is never logged: it may hold codes or tokens.
func logPath(r *http.Request) string {
	p := r.URL.EscapedPath()
	if len(p) > 512 {
		p = p[:512] + "..."
	}
	return p
}
