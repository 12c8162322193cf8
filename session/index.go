package session

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/gatehouse/gatehouse/identity"
	"github.com/gatehouse/gatehouse/internal/sealed"
	"github.com/gatehouse/gatehouse/sessionstore"
)

// The per-user index lists a user's browser sessions and device tokens,
// for the sessions page (see package account) and so that ending them
// deletes their records. It is a convenience, not a security boundary:
// a session or token missing from it (the index was evicted, or an entry
// lost in a race) still ends with its user's generation (EndAll), which
// every session and token checks on every use.
//
// Entries are appended (one memcached append per sign-in, no read) and
// sealed with a key derived from session.secret, so whoever reads the
// store learns neither where people sign in from nor which records are
// theirs. An entry names the record it stands for by its store key (a
// hash: it cannot be used as a cookie or token) and is shown by an opaque
// handle (the public id, as in the assertion's sid).

// Kinds of index entries.
const (
	KindBrowser = "browser" // a browser session
	KindDevice  = "device"  // a token issued through the device flow
)

// Entry is one session or token of a user.
type Entry struct {
	Handle    string    `json:"id"`   // opaque: the session's or token's public id
	Kind      string    `json:"kind"` // KindBrowser or KindDevice
	Provider  string    `json:"provider"`
	Record    string    `json:"record"` // its store key
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	ClientIP  string    `json:"client_ip,omitempty"`
	UserAgent string    `json:"user_agent,omitempty"`
	ClientID  string    `json:"client_id,omitempty"` // device tokens
	Scopes    []string  `json:"scopes,omitempty"`    // device tokens
	// LastSeen is filled by List for browser sessions (see seenKey).
	LastSeen time.Time `json:"-"`
}

// maxUserAgent bounds what an entry keeps of a User-Agent header.
const maxUserAgent = 256

// compactAbove is the number of ended entries above which List rewrites
// the index without them.
const compactAbove = 32

// Index is the per-user index; see above.
type Index struct {
	store sessionstore.Store
	key   [32]byte
	now   func() time.Time
}

// NewIndex returns the index over store, sealing with a key derived from
// secret (session.secret). now may be nil (time.Now).
func NewIndex(store sessionstore.Store, secret string, now func() time.Time) *Index {
	if now == nil {
		now = time.Now
	}
	return &Index{store: store, key: sha256.Sum256([]byte("gatehouse session index v1\x00" + secret)), now: now}
}

func indexKey(id identity.Identity) string {
	h := userHash(id)
	return "ux1:" + base64.RawURLEncoding.EncodeToString(h[:])
}

// seenKey holds when a browser session was last used, as its idle clock
// last moved (its own record is sealed with a key only its cookie has).
func seenKey(handle string) string { return "ls1:" + handle }

// Add lists e under id's user.
func (x *Index) Add(ctx context.Context, id identity.Identity, e Entry) error {
	if len(e.UserAgent) > maxUserAgent {
		e.UserAgent = e.UserAgent[:maxUserAgent]
	}
	plain, err := json.Marshal(e)
	if err != nil {
		return err
	}
	key := indexKey(id)
	rec, err := sealed.Seal(&x.key, []byte(key), plain)
	if err != nil {
		return err
	}
	line := base64.RawURLEncoding.AppendEncode(nil, rec)
	// One ttl for every append to a key (as Append asks), so that a short
	// entry never cuts the life of a longer one listed before it: the
	// index lives as long as the user's generation. List drops what ended.
	return x.store.Append(ctx, key, append(line, '\n'), generationTTL)
}

// List returns the live entries of id's user, newest first: those whose
// record still exists. It drops ended entries from the index once there
// are many.
func (x *Index) List(ctx context.Context, id identity.Identity) ([]Entry, error) {
	key := indexKey(id)
	raw, err := x.store.Get(ctx, key)
	if errors.Is(err, sessionstore.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var all []Entry
	var lines [][]byte
	for _, line := range bytes.Split(raw, []byte("\n")) {
		rec, err := base64.RawURLEncoding.AppendDecode(nil, line)
		if err != nil || len(line) == 0 {
			continue
		}
		plain, err := sealed.Open(&x.key, []byte(key), rec)
		if err != nil {
			continue // torn or foreign: not ours to show
		}
		var e Entry
		if json.Unmarshal(plain, &e) != nil {
			continue
		}
		all = append(all, e)
		lines = append(lines, line)
	}
	keys := make([]string, 0, 2*len(all))
	for _, e := range all {
		keys = append(keys, e.Record)
		if e.Kind == KindBrowser {
			keys = append(keys, seenKey(e.Handle))
		}
	}
	recs, err := x.store.GetMulti(ctx, keys)
	if err != nil {
		return nil, err
	}
	now := x.now()
	var live []Entry
	var kept [][]byte
	for i, e := range all {
		if _, ok := recs[e.Record]; !ok || !now.Before(e.ExpiresAt) {
			continue
		}
		if v, ok := recs[seenKey(e.Handle)]; ok {
			if unix, err := strconv.ParseInt(string(v), 10, 64); err == nil {
				e.LastSeen = time.Unix(unix, 0)
			}
		}
		live = append(live, e)
		kept = append(kept, lines[i])
	}
	if len(all)-len(live) > compactAbove {
		// Rewritten without the ended entries. An entry appended between
		// the read and this write is lost from the list (not from the
		// store: the generation still ends it), which is why the index is
		// never what keeps anyone signed out.
		var b []byte
		for _, line := range kept {
			b = append(append(b, line...), '\n')
		}
		if len(b) == 0 {
			_ = x.store.Delete(ctx, key)
		} else {
			_ = x.store.Set(ctx, key, b, generationTTL)
		}
	}
	sort.SliceStable(live, func(i, j int) bool { return live[i].CreatedAt.After(live[j].CreatedAt) })
	return live, nil
}

// End ends the entry of id's user with handle: its record is deleted, on
// every replica. It reports whether there was such an entry.
func (x *Index) End(ctx context.Context, id identity.Identity, handle string) (bool, error) {
	entries, err := x.List(ctx, id)
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if e.Handle == handle {
			if err := x.store.Delete(ctx, e.Record); err != nil {
				return false, fmt.Errorf("session store: %w", err)
			}
			return true, nil
		}
	}
	return false, nil
}

// deleteAll deletes the record of every entry of id's user, as far as the
// store lets it: the caller has already ended them with a new generation.
func (x *Index) deleteAll(ctx context.Context, id identity.Identity) {
	entries, err := x.List(ctx, id)
	if err != nil {
		return
	}
	for _, e := range entries {
		_ = x.store.Delete(ctx, e.Record)
	}
}
