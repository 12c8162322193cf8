// Package echo is the demo's upstream: it shows the request it received,
// so you can see exactly what Gatehouse forwarded. It also streams
// Server-Sent Events, echoes WebSocket frames and answers slowly on demand,
// for tests of the proxy.
package echo

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// identityHeaders are shown first on the page.
var identityHeaders = []string{
	"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups",
	"X-Forwarded-Preferred-Username", "X-Gatehouse-Assertion",
}

// NewHandler returns the echo upstream.
func NewHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /events", events)
	mux.HandleFunc("GET /ws", websocket)
	mux.HandleFunc("GET /slow", slow)
	mux.HandleFunc("/", echo)
	return mux
}

// Request is the JSON form of what the upstream received.
type Request struct {
	Method   string              `json:"method"`
	Path     string              `json:"path"`
	RawQuery string              `json:"raw_query"`
	Host     string              `json:"host"`
	Headers  map[string][]string `json:"headers"`
}

func echo(w http.ResponseWriter, r *http.Request) {
	if strings.Contains(r.Header.Get("Accept"), "application/json") || r.URL.Query().Get("format") == "json" {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(Request{
			Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Host: r.Host, Headers: r.Header,
		})
		return
	}
	type row struct{ Name, ID, Value string }
	var ids, all []row
	for _, name := range identityHeaders {
		v := r.Header.Get(name)
		if v == "" {
			v = "(not set)"
		}
		ids = append(ids, row{Name: name, ID: strings.ToLower(name), Value: v})
	}
	names := make([]string, 0, len(r.Header))
	for n := range r.Header {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		all = append(all, row{Name: n, Value: strings.Join(r.Header.Values(n), ", ")})
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = page.Execute(w, map[string]any{"Identity": ids, "All": all, "Method": r.Method, "URI": r.URL.RequestURI()})
}

var page = template.Must(template.New("echo").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Echo upstream</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;margin:0;padding:16px;background:#f4f6f8;color:#1d2329}
main{max-width:760px;margin:auto;background:#fff;border-radius:12px;padding:20px;box-shadow:0 2px 12px rgba(0,0,0,.08)}
h1{font-size:1.3rem;margin:0 0 .3rem}table{border-collapse:collapse;width:100%;margin:.8rem 0}
th,td{text-align:left;padding:.35rem .4rem;border-bottom:1px solid #e3e7eb;vertical-align:top}
td{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85rem;word-break:break-all}
.id th{width:40%}.muted{color:#5b6670}
</style></head><body><main>
<h1>Echo upstream — you are through Gatehouse</h1>
<p class="muted">{{.Method}} {{.URI}}</p>
<h2>Identity</h2>
<table class="id">{{range .Identity}}<tr><th>{{.Name}}</th><td id="{{.ID}}">{{.Value}}</td></tr>{{end}}</table>
<p><a href="/oauth2/sign_out" id="sign-out">Sign out</a></p>
<h2>All request headers</h2>
<table>{{range .All}}<tr><th>{{.Name}}</th><td>{{.Value}}</td></tr>{{end}}</table>
</main></body></html>
`))

// events streams five Server-Sent Events, flushing each.
func events(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	rc := http.NewResponseController(w)
	for i := 1; i <= 5; i++ {
		fmt.Fprintf(w, "data: tick %d\n\n", i)
		if err := rc.Flush(); err != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// slow answers "ok" after ?ms= milliseconds (at most 10 s).
func slow(w http.ResponseWriter, r *http.Request) {
	ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
	d := min(time.Duration(ms)*time.Millisecond, 10*time.Second)
	select {
	case <-r.Context().Done():
		return
	case <-time.After(d):
	}
	_, _ = io.WriteString(w, "ok")
}

// websocket is a minimal RFC 6455 echo: enough for short text frames.
func websocket(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || r.Header.Get("Sec-WebSocket-Key") == "" {
		http.Error(w, "websocket upgrade required", http.StatusBadRequest)
		return
	}
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	sum := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
		base64.StdEncoding.EncodeToString(sum[:]))
	if err := rw.Flush(); err != nil {
		return
	}
	for {
		op, payload, err := readFrame(rw.Reader)
		if err != nil || op == 0x8 { // error or close
			_, _ = conn.Write([]byte{0x88, 0})
			return
		}
		if err := writeFrame(rw.Writer, op, payload); err != nil {
			return
		}
	}
}

func readFrame(r *bufio.Reader) (op byte, payload []byte, err error) {
	var h [2]byte
	if _, err = io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	op = h[0] & 0x0f
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err = io.ReadFull(r, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		return 0, nil, fmt.Errorf("frame too large")
	}
	var mask [4]byte
	masked := h[1]&0x80 != 0
	if masked {
		if _, err = io.ReadFull(r, mask[:]); err != nil {
			return 0, nil, err
		}
	}
	payload = make([]byte, n)
	if _, err = io.ReadFull(r, payload); err != nil {
		return 0, nil, err
	}
	if masked {
		for i := range payload {
			payload[i] ^= mask[i%4]
		}
	}
	return op, payload, nil
}

func writeFrame(w *bufio.Writer, op byte, payload []byte) error {
	_ = w.WriteByte(0x80 | op)
	if len(payload) < 126 {
		_ = w.WriteByte(byte(len(payload)))
	} else {
		_ = w.WriteByte(126)
		var b [2]byte
		binary.BigEndian.PutUint16(b[:], uint16(len(payload)))
		_, _ = w.Write(b[:])
	}
	_, _ = w.Write(payload)
	return w.Flush()
}
