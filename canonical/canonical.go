// Package canonical brings a request path to the one form Gatehouse both
// decides on and forwards.
//
// An authenticating proxy must never decide on one reading of a path while
// the upstream acts on another. Servers disagree about dot segments hidden
// behind percent-encoding, backslashes, ";" path parameters, encoded
// slashes and invalid escapes, so such paths are not guessed at: Parse
// either returns one canonical path, or says why the path is refused (or,
// for dot segments, where it should be redirected). The rules are SPEC's
// "Canonical requests" table.
package canonical

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// SlashMode says what a percent-encoded slash (%2F) in a path means.
type SlashMode int

const (
	// RejectSlashes refuses a path with %2F (the default).
	RejectSlashes SlashMode = iota
	// DecodeSlashes reads %2F as "/" before any other rule.
	DecodeSlashes
	// KeepSlashes keeps %2F as an ordinary character of its segment, for
	// decisions and upstream alike.
	KeepSlashes
)

// ParamMode says what a ";" (or %3B) in a path means.
type ParamMode int

const (
	// RejectParams refuses a path with ";" (the default).
	RejectParams ParamMode = iota
	// KeepParams forwards ";" parameters as they are; decisions then look
	// at every segment both with and without its parameters.
	KeepParams
)

// Options are the operator's choices for the two ambiguous characters.
type Options struct {
	EncodedSlashes SlashMode
	PathParameters ParamMode
}

// ParseSlashMode parses upstream.encoded_slashes.
func ParseSlashMode(s string) (SlashMode, error) {
	switch s {
	case "", "reject":
		return RejectSlashes, nil
	case "decode":
		return DecodeSlashes, nil
	case "keep":
		return KeepSlashes, nil
	}
	return 0, fmt.Errorf("%q is not one of reject, decode, keep", s)
}

// ParseParamMode parses upstream.path_parameters.
func ParseParamMode(s string) (ParamMode, error) {
	switch s {
	case "", "reject":
		return RejectParams, nil
	case "keep":
		return KeepParams, nil
	}
	return 0, fmt.Errorf("%q is not one of reject, keep", s)
}

// Path is a canonical request path.
type Path struct {
	// Escaped is the path as sent upstream: unreserved characters
	// decoded, every other escape in upper-case hex, characters that may
	// not appear raw in a path escaped.
	Escaped string
	// Decoded is what routes, policies and scopes match: Escaped fully
	// percent-decoded, except that a kept encoded slash stays "%2F".
	Decoded string
	// Stripped is Decoded with each segment's ";" parameters removed. It
	// equals Decoded unless path parameters are kept and present.
	Stripped string
}

// HasParams reports whether the path carries ";" parameters, so that its
// two readings (with and without them) can differ.
func (p Path) HasParams() bool { return p.Stripped != p.Decoded }

// ErrDotSegments is returned (wrapped in *Error) for a path with "." or
// ".." segments: the path is understood, but only its resolved form may be
// used. GET and HEAD are redirected there; other methods are refused.
var ErrDotSegments = errors.New("dot segments")

// Error explains why a path is not canonical.
type Error struct {
	// Reason is a short, user-facing explanation.
	Reason string
	// Resolved is the canonical path to redirect to; set only for dot
	// segments (errors.Is(err, ErrDotSegments)).
	Resolved *Path
}

func (e *Error) Error() string { return "non-canonical path: " + e.Reason }

// Is makes errors.Is(err, ErrDotSegments) true for dot-segment errors.
func (e *Error) Is(target error) bool { return target == ErrDotSegments && e.Resolved != nil }

func refuse(format string, args ...any) (Path, error) {
	return Path{}, &Error{Reason: fmt.Sprintf(format, args...)}
}

// segment is one path segment in its three readings.
type segment struct{ escaped, decoded, stripped string }

// Parse brings raw, a request path exactly as received (percent-encoded,
// without the query), to its canonical form.
func Parse(raw string, o Options) (Path, error) {
	if !strings.HasPrefix(raw, "/") {
		return refuse("the path must begin with /")
	}
	if plain(raw) {
		return Path{Escaped: raw, Decoded: raw, Stripped: raw}, nil
	}
	if o.EncodedSlashes == DecodeSlashes {
		// "%2F" is "/" before anything else; every "%" starts an escape
		// (checked below), so this never splits another escape.
		raw = replaceFold(raw, "%2F", "/")
	}
	parts := strings.Split(raw[1:], "/")
	segs := make([]segment, 0, len(parts))
	dots := false
	for _, part := range parts {
		s, err := parseSegment(part, o)
		if err != nil {
			return Path{}, err
		}
		switch s.stripped {
		case ".", "..":
			if s.decoded != s.stripped {
				return refuse("a dot segment carries ';' parameters")
			}
			dots = true
		}
		if o.EncodedSlashes == KeepSlashes && hasDotSubsegment(s.decoded) {
			// An upstream that decodes %2F after all would see a dot
			// segment here.
			return refuse("an encoded slash hides a dot segment")
		}
		segs = append(segs, s)
	}
	if dots {
		p := join(resolveDots(segs))
		return Path{}, &Error{Reason: "the path has dot segments", Resolved: &p}
	}
	return join(segs), nil
}

// plain reports whether raw is already canonical in the common, cheap
// case: only unreserved characters, sub-delimiters other than ";", ":",
// "@" and "/", and no dot segment. Such a path needs no work at all.
func plain(raw string) bool {
	segStart := 0
	for i := 0; i <= len(raw); i++ {
		if i == len(raw) || raw[i] == '/' {
			if seg := raw[segStart:i]; seg == "." || seg == ".." {
				return false
			}
			segStart = i + 1
			continue
		}
		if c := raw[i]; !isPathChar(c) {
			return false
		}
	}
	return true
}

// parseSegment validates and decodes one segment (no "/" inside).
func parseSegment(s string, o Options) (segment, error) {
	var esc, dec strings.Builder
	esc.Grow(len(s))
	dec.Grow(len(s))
	paramAt := -1 // index in dec of the first ';'
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return segment{}, &Error{Reason: "the path has an invalid percent-encoding"}
			}
			b := unhex(s[i+1])<<4 | unhex(s[i+2])
			i += 2
			switch {
			case b < 0x20 || b == 0x7f:
				return segment{}, &Error{Reason: "the path has an encoded control character"}
			case b == '\\':
				return segment{}, &Error{Reason: "the path has an encoded backslash"}
			case b == '/':
				if o.EncodedSlashes != KeepSlashes {
					return segment{}, &Error{Reason: "the path has an encoded slash (%2F)"}
				}
				esc.WriteString("%2F")
				dec.WriteString("%2F")
			case b == ';':
				if o.PathParameters != KeepParams {
					return segment{}, &Error{Reason: "the path has ';' parameters"}
				}
				if paramAt < 0 {
					paramAt = dec.Len()
				}
				esc.WriteString("%3B")
				dec.WriteByte(';')
			case isUnreserved(b):
				esc.WriteByte(b)
				dec.WriteByte(b)
			default:
				writeEscape(&esc, b)
				dec.WriteByte(b)
			}
		case c < 0x20 || c == 0x7f:
			return segment{}, &Error{Reason: "the path has a control character"}
		case c == '\\':
			return segment{}, &Error{Reason: "the path has a backslash"}
		case c == '#' || c == '?':
			return segment{}, &Error{Reason: "the path has a raw '#' or '?'"}
		case c == ';':
			if o.PathParameters != KeepParams {
				return segment{}, &Error{Reason: "the path has ';' parameters"}
			}
			if paramAt < 0 {
				paramAt = dec.Len()
			}
			esc.WriteByte(c)
			dec.WriteByte(c)
		case isPathChar(c):
			esc.WriteByte(c)
			dec.WriteByte(c)
		default: // space, quotes, brackets, non-ASCII bytes: escaped upstream
			writeEscape(&esc, c)
			dec.WriteByte(c)
		}
	}
	d := dec.String()
	if !utf8.ValidString(d) {
		// Overlong forms such as %C0%AE were read as "." by some servers.
		return segment{}, &Error{Reason: "the path is not valid UTF-8"}
	}
	st := d
	if paramAt >= 0 {
		st = d[:paramAt]
	}
	return segment{escaped: esc.String(), decoded: d, stripped: st}, nil
}

// hasDotSubsegment reports whether a segment with kept encoded slashes
// would hold a dot segment once they are decoded, with or without its ";"
// parameters ("x;y%2F..%2Fadmin" too).
func hasDotSubsegment(s string) bool {
	if !strings.Contains(strings.ToUpper(s), "%2F") {
		return false
	}
	for _, sub := range strings.Split(replaceFold(s, "%2F", "/"), "/") {
		name, _, _ := strings.Cut(sub, ";")
		if sub == "." || sub == ".." || name == "." || name == ".." {
			return true
		}
	}
	return false
}

// resolveDots removes "." and ".." segments as RFC 3986 5.2.4 does; a
// path ending in a dot segment keeps its trailing slash.
func resolveDots(segs []segment) []segment {
	out := make([]segment, 0, len(segs))
	for i, s := range segs {
		last := i == len(segs)-1
		switch s.decoded {
		case ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, s)
			continue
		}
		if last {
			out = append(out, segment{})
		}
	}
	return out
}

func join(segs []segment) Path {
	var e, d, s strings.Builder
	for _, seg := range segs {
		e.WriteByte('/')
		e.WriteString(seg.escaped)
		d.WriteByte('/')
		d.WriteString(seg.decoded)
		s.WriteByte('/')
		s.WriteString(seg.stripped)
	}
	if len(segs) == 0 {
		return Path{Escaped: "/", Decoded: "/", Stripped: "/"}
	}
	return Path{Escaped: e.String(), Decoded: d.String(), Stripped: s.String()}
}

// replaceFold replaces every occurrence of old (ASCII, any case) in s.
func replaceFold(s, old, repl string) string {
	if !strings.Contains(strings.ToUpper(s), strings.ToUpper(old)) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		if i+len(old) <= len(s) && strings.EqualFold(s[i:i+len(old)], old) {
			b.WriteString(repl)
			i += len(old)
			continue
		}
		b.WriteByte(s[i])
		i++
	}
	return b.String()
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// isPathChar reports whether c may appear unescaped in a path segment
// (RFC 3986 pchar, less "%", which starts an escape, and ";", handled
// apart).
func isPathChar(c byte) bool {
	if isUnreserved(c) {
		return true
	}
	switch c {
	case '!', '$', '&', '\'', '(', ')', '*', '+', ',', '=', ':', '@':
		return true
	}
	return false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

func writeEscape(b *strings.Builder, c byte) {
	const hex = "0123456789ABCDEF"
	b.WriteByte('%')
	b.WriteByte(hex[c>>4])
	b.WriteByte(hex[c&15])
}

// RawPath returns the path part of a request target exactly as received:
// origin-form ("/a?b") up to the query, absolute-form
// ("http://host/a?b") its path. ok is false for any other form ("*",
// authority-form), which has no path to forward.
func RawPath(requestURI string) (path string, ok bool) {
	target := requestURI
	if i := strings.IndexByte(target, '?'); i >= 0 {
		target = target[:i]
	}
	if strings.HasPrefix(target, "/") {
		return target, true
	}
	lower := strings.ToLower(target)
	for _, scheme := range []string{"http://", "https://"} {
		if strings.HasPrefix(lower, scheme) {
			rest := target[len(scheme):]
			i := strings.IndexByte(rest, '/')
			if i < 0 {
				return "/", true
			}
			return rest[i:], true
		}
	}
	return "", false
}
