// Package workload verifies bearer JWTs that machines bring from issuers
// the operator trusts (auth.jwt_issuers): Kubernetes service-account
// tokens, GitHub Actions OIDC tokens, cloud workload identities. A
// workload never signs in through a browser; its platform hands it a
// short-lived signed token, and this package decides whether that token
// proves an identity here.
//
// A token is matched to the one configured issuer whose issuer equals
// its iss, verified with that issuer's public keys only (discovered,
// fetched from a URL or read from a mounted file), and then checked for
// audience, validity window, lifetime and the entry's claim rules. The
// result is an identity.Identity with provider "jwt:NAME" and the scopes
// the entry grants; the proxy decides what those reach.
//
// Keys are fetched lazily and cached per issuer. An unknown kid refetches
// at most once a minute, so forged tokens cannot turn the proxy into a
// load generator against the issuer; an issuer that cannot be reached
// is reported as ErrUnavailable (503), never as a bad token.
package workload

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/identity"
)

// maxTokenBytes bounds what is parsed at all: real workload tokens are
// 1-2 KiB.
const maxTokenBytes = 16 << 10

// leeway forgives clock skew between the issuer and us for exp, nbf and
// iat.
const leeway = 30 * time.Second

// Verifier checks workload JWTs against the configured issuers. It is
// safe for concurrent use.
type Verifier struct {
	byIss map[string]*issuer // by the iss tokens carry
	list  []*issuer          // sorted by name
	now   func() time.Time
}

// issuer is one compiled IssuerConfig.
type issuer struct {
	name   string
	cfg    IssuerConfig
	algs   map[string]bool
	auds   map[string]bool
	rules  []claimRule // sorted by claim, so the rule named on refusal is stable
	scopes []string
	src    keySource
}

type claimRule struct {
	claim string
	glob  glob
}

// Result is a verified workload token.
type Result struct {
	Identity identity.Identity
	Issuer   string    // the jwt_issuers entry name
	Scopes   []string  // the scopes that entry grants
	TokenID  string    // SHA-256 of the token, hex: safe to log, a cache key, the assertion's sid
	Expiry   time.Time // the token's exp
}

// Error is a refused token. Description is safe to show the client: it
// never quotes the token.
type Error struct {
	Status      int    // 401 or 403
	Code        string // "invalid_token" (401) or "forbidden" (403)
	Rule        string // for 403: the rule not met, e.g. "claims.repository" or "user_claim"
	Description string
}

func (e *Error) Error() string {
	if e.Rule != "" {
		return fmt.Sprintf("workload token refused by %s: %s", e.Rule, e.Description)
	}
	return "workload token refused: " + e.Description
}

func invalid(format string, args ...any) *Error {
	return &Error{Status: http.StatusUnauthorized, Code: "invalid_token", Description: fmt.Sprintf(format, args...)}
}

func forbidden(rule, format string, args ...any) *Error {
	return &Error{Status: http.StatusForbidden, Code: "forbidden", Rule: rule, Description: fmt.Sprintf(format, args...)}
}

// New compiles the issuers. It does no network or file I/O: keys are
// loaded on first use (or by Ready), so Gatehouse starts while an issuer
// is down. client fetches discovery documents and key sets (nil: a
// client with a timeout); now is the clock (nil: time.Now); logger may be
// nil. The map is not modified; defaults are filled in a copy.
func New(issuers map[string]IssuerConfig, client *http.Client, now func() time.Time, logger *slog.Logger) (*Verifier, error) {
	if client == nil {
		client = &http.Client{Timeout: fetchTimeout}
	}
	if now == nil {
		now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfgs := make(map[string]IssuerConfig, len(issuers))
	for name, c := range issuers {
		cfgs[name] = c
	}
	if ps := ValidateAll(cfgs, nil); len(ps) > 0 {
		msgs := make([]string, len(ps))
		for i, p := range ps {
			msgs[i] = "jwt_issuers." + p.Key + ": " + p.Message
		}
		return nil, errors.New(strings.Join(msgs, "; "))
	}
	v := &Verifier{byIss: map[string]*issuer{}, now: now}
	for _, name := range slices.Sorted(maps.Keys(cfgs)) {
		c := cfgs[name]
		is := &issuer{
			name:   name,
			cfg:    c,
			algs:   map[string]bool{},
			auds:   map[string]bool{},
			scopes: append([]string{}, c.Scopes...),
		}
		for _, a := range c.Algorithms {
			is.algs[a] = true
		}
		for _, a := range c.Audiences {
			is.auds[a] = true
		}
		for _, claim := range slices.Sorted(maps.Keys(c.Claims)) {
			g, _ := compileGlob(c.Claims[claim]) // checked by ValidateAll
			is.rules = append(is.rules, claimRule{claim: claim, glob: g})
		}
		log := logger.With("component", "workload")
		if c.JWKSFile != "" {
			is.src = &fileSource{name: name, path: c.JWKSFile, now: now, log: log}
		} else {
			is.src = &remoteSource{name: name, issuerURL: c.IssuerURL, jwksURL: c.JWKSURL, client: client, now: now, log: log}
		}
		v.byIss[c.Issuer] = is
		v.list = append(v.list, is)
	}
	return v, nil
}

// Ready loads the keys of every issuer that has none yet and reports the
// ones that cannot be had, for a readiness probe.
func (v *Verifier) Ready(ctx context.Context) error {
	var errs []error
	for _, is := range v.list {
		if _, err := is.src.keys(ctx, ""); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Issuers lists the configured issuer names, sorted.
func (v *Verifier) Issuers() []string {
	names := make([]string, len(v.list))
	for i, is := range v.list {
		names[i] = is.name
	}
	return names
}

// LooksLikeJWT is a cheap test of whether a bearer token is a JWT at all
// (JWS, or JWE so that it is refused with a clear reason): three or five
// base64url parts and a header that is a JSON object with an alg.
// Gatehouse's own tokens ("gth_...") and static tokens fail it.
func LooksLikeJWT(raw string) bool {
	if n := strings.Count(raw, "."); n != 2 && n != 4 {
		return false
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c != '.' && !isBase64URL(c) {
			return false
		}
	}
	head, _, _ := strings.Cut(raw, ".")
	_, err := parseHeader(head)
	return err == nil
}

func isBase64URL(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// header is the part of a JOSE header we look at.
type header struct {
	alg  string
	kid  string
	crit bool
}

func parseHeader(seg string) (header, error) {
	var h header
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return h, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil || m == nil {
		return h, errors.New("header is not a JSON object")
	}
	if err := json.Unmarshal(m["alg"], &h.alg); err != nil || h.alg == "" {
		return h, errors.New("header has no alg")
	}
	if raw, ok := m["kid"]; ok {
		if err := json.Unmarshal(raw, &h.kid); err != nil {
			return h, errors.New("header kid is not a string")
		}
	}
	_, h.crit = m["crit"]
	return h, nil
}
