package workload

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/gatehouse/gatehouse/identity"
)

// Verify checks raw and returns whom it proves. A refused token is an
// *Error (401 or 403); any other error means the issuer's keys cannot be
// had right now (it wraps ErrUnavailable; answer 503).
func (v *Verifier) Verify(ctx context.Context, raw string) (*Result, error) {
	if len(raw) > maxTokenBytes {
		return nil, invalid("the token is larger than %d bytes", maxTokenBytes)
	}
	switch strings.Count(raw, ".") {
	case 2:
	case 4:
		return nil, invalid("encrypted tokens (JWE) are not accepted")
	default:
		return nil, invalid("the token is not a JWT")
	}
	segs := strings.SplitN(raw, ".", 3)
	h, err := parseHeader(segs[0])
	if err != nil {
		return nil, invalid("the token header is malformed")
	}
	if h.crit {
		// We implement no extension, so any critical one must fail
		// (RFC 7515 §4.1.11); go-jose would honour "b64", which changes
		// what the signature covers.
		return nil, invalid("tokens with critical header parameters are not accepted")
	}

	// The issuer is read before verification, only to know whose keys
	// to verify with; no other claim is used until the signature is
	// checked over these very bytes (see bytes.Equal below).
	unverified, err := base64.RawURLEncoding.DecodeString(segs[1])
	if err != nil {
		return nil, invalid("the token payload is malformed")
	}
	// A map, not a struct: encoding/json matches struct fields
	// case-insensitively, and "ISS" must not pass for "iss".
	var claims map[string]json.RawMessage
	if err := json.Unmarshal(unverified, &claims); err != nil || claims == nil {
		return nil, invalid("the token payload is not a JSON object")
	}
	iss, ok := stringClaim(claims, "iss")
	if !ok || iss == "" {
		return nil, invalid("the token has no issuer")
	}
	is, ok := v.byIss[iss]
	if !ok {
		return nil, invalid("the token's issuer is not trusted here")
	}
	if !is.algs[h.alg] {
		return nil, invalid("the token's signing algorithm is not accepted for this issuer")
	}

	// Parsed before the keys are looked up, so that garbage never
	// causes a key fetch.
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(h.alg)})
	if err != nil || len(jws.Signatures) != 1 {
		return nil, invalid("the token is malformed")
	}
	keys, err := is.src.keys(ctx, h.kid)
	if err != nil {
		return nil, err
	}
	var payload []byte
	tried := false
	for i := range keys {
		if !keyFits(&keys[i], h.alg) {
			continue
		}
		tried = true
		if p, err := jws.Verify(keys[i].Key); err == nil {
			payload = p
			break
		}
	}
	switch {
	case !tried:
		return nil, invalid("the token's signing key is unknown")
	case payload == nil:
		return nil, invalid("the token's signature is invalid")
	}

	if !bytes.Equal(payload, unverified) {
		// go-jose verified the very segment we read; if that ever
		// changes, refuse rather than trust claims it did not cover.
		return nil, invalid("the token is malformed")
	}
	exp, err := is.checkTime(claims, v.now())
	if err != nil {
		return nil, err
	}
	id, err := is.identity(claims)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(raw))
	return &Result{
		Identity: id,
		Issuer:   is.name,
		Scopes:   append([]string{}, is.scopes...),
		TokenID:  hex.EncodeToString(sum[:]),
		Expiry:   exp,
	}, nil
}

// checkTime checks aud, exp, nbf, iat and the lifetime, and returns exp.
func (is *issuer) checkTime(claims map[string]json.RawMessage, now time.Time) (time.Time, error) {
	if !is.audienceOK(claims["aud"]) {
		return time.Time{}, invalid("the token is not meant for this audience")
	}
	exp, ok, bad := numericDate(claims, "exp")
	switch {
	case bad || !ok:
		return exp, invalid("the token has no valid exp")
	case now.After(exp.Add(leeway)):
		return exp, invalid("the token has expired")
	}
	nbf, hasNBF, bad := numericDate(claims, "nbf")
	switch {
	case bad:
		return exp, invalid("the token's nbf is malformed")
	case hasNBF && nbf.After(now.Add(leeway)):
		return exp, invalid("the token is not valid yet")
	}
	iat, hasIAT, bad := numericDate(claims, "iat")
	switch {
	case bad:
		return exp, invalid("the token's iat is malformed")
	case hasIAT && iat.After(now.Add(leeway)):
		return exp, invalid("the token was issued in the future")
	}
	start := now
	switch {
	case hasIAT:
		start = iat
	case hasNBF:
		start = nbf
	}
	if exp.Sub(start) > is.cfg.MaxLifetime {
		return exp, invalid("the token's lifetime is longer than this issuer's max_lifetime")
	}
	return exp, nil
}

// audienceOK: aud is a string or an array of strings (RFC 7519 §4.1.3),
// and one of them must be ours.
func (is *issuer) audienceOK(raw json.RawMessage) bool {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return is.auds[one]
	}
	var many []string
	if json.Unmarshal(raw, &many) != nil {
		return false
	}
	for _, a := range many {
		if is.auds[a] {
			return true
		}
	}
	return false
}

// identity applies the user claim and the claim rules and builds the
// identity.
func (is *issuer) identity(claims map[string]json.RawMessage) (identity.Identity, error) {
	user, ok := stringClaim(claims, is.cfg.UserClaim)
	if !ok || user == "" || !printable(user) {
		return identity.Identity{}, forbidden("user_claim", "the token's %s claim is missing or not a usable user name", is.cfg.UserClaim)
	}
	for _, r := range is.rules {
		v, ok := scalarClaim(claims[r.claim])
		if !ok || !r.glob.match(v) {
			return identity.Identity{}, forbidden("claims."+r.claim, "the token's %s claim does not match the rule for this issuer", r.claim)
		}
	}
	id := identity.Identity{
		Provider: "jwt:" + is.name,
		Subject:  user,
		User:     user,
		Groups:   []string{},
	}
	if is.cfg.EmailClaim != "" {
		// A workload's e-mail is used (forwarded, and matched by
		// allowed_domains and allowed_emails) only when its issuer vouches
		// for it: an upstream trusting X-Forwarded-Email must not be fooled
		// by an address a workload chose.
		if email, ok := stringClaim(claims, is.cfg.EmailClaim); ok && email != "" && printable(email) &&
			strings.TrimSpace(string(claims["email_verified"])) == "true" {
			id.Email, id.EmailVerified = email, true
		}
	}
	if is.cfg.GroupsClaim != "" {
		id.Groups = groupsClaim(claims[is.cfg.GroupsClaim])
	}
	return id, nil
}

func stringClaim(claims map[string]json.RawMessage, name string) (string, bool) {
	raw, ok := claims[name]
	if !ok {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// scalarClaim renders a claim for a rule: a string as itself, a number
// or boolean as its JSON text (so run_attempt: "1" matches 1). null,
// objects and arrays never match: a rule is about one value.
func scalarClaim(raw json.RawMessage) (string, bool) {
	t := strings.TrimSpace(string(raw))
	switch {
	case t == "":
		return "", false
	case t[0] == '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", false
		}
		return s, true
	case t == "true" || t == "false":
		return t, true
	case t[0] == '-' || '0' <= t[0] && t[0] <= '9':
		return t, true
	}
	return "", false
}

// groupsClaim reads a string or an array of strings; anything else is no
// groups. Groups only ever grant, so dropping odd ones is the safe side.
func groupsClaim(raw json.RawMessage) []string {
	groups := []string{}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		if usableGroup(one) {
			groups = append(groups, one)
		}
		return groups
	}
	var many []json.RawMessage
	if json.Unmarshal(raw, &many) != nil {
		return groups
	}
	for _, m := range many {
		var g string
		if json.Unmarshal(m, &g) == nil && usableGroup(g) {
			groups = append(groups, g)
		}
	}
	return groups
}

// usableGroup refuses a group name that would read as something else in
// X-Forwarded-Groups, which joins names with commas.
func usableGroup(g string) bool {
	return g != "" && printable(g) && !strings.Contains(g, ",")
}

// printable refuses control characters: these values end up in request
// headers sent upstream, where CR or LF would split a header.
func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// numericDate reads a NumericDate claim (seconds since the epoch, maybe
// fractional). bad reports a claim that is present but not a sane number.
func numericDate(claims map[string]json.RawMessage, name string) (t time.Time, ok, bad bool) {
	raw, present := claims[name]
	if !present {
		return time.Time{}, false, false
	}
	s := strings.TrimSpace(string(raw))
	if s == "" || (s[0] != '-' && (s[0] < '0' || s[0] > '9')) {
		return time.Time{}, false, true
	}
	f, err := strconv.ParseFloat(s, 64)
	// Beyond ±1e11 s (year 5138) a date is nonsense, and the conversion
	// below would overflow.
	if err != nil || math.IsNaN(f) || math.Abs(f) > 1e11 {
		return time.Time{}, false, true
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, false
}
