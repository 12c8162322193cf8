package session

import (
	"bytes"
	"encoding/json"

	"github.com/gatehouse/gatehouse/internal/bounded"
)

// openCacheSize bounds the sessions kept decoded: enough for the active
// users of one replica; beyond it, entries are evicted one at a time.
const openCacheSize = 4096

// openCache keeps the last decoded copy of each busy session, so a
// request whose stored record has not changed since the last one skips
// the AES-GCM open and the JSON decode. An entry is keyed by the cookie's
// value, the whole ticket (id, key and hint: only the cookie's holder can
// hit it; a value is cached only once it parsed and opened), and used only
// when the record just read from the store is byte for byte the one it
// was decoded from, so it can never serve a session the store no longer
// holds, or one written since (revalidated, touched) by another replica.
type openCache = bounded.Map[string, openEntry] // by cookie value

type openEntry struct {
	record  []byte
	session Session
}

func newOpenCache(max int) *openCache { return bounded.New[string, openEntry](max) }

// open returns the session sealed in record for ticket t, whose cookie
// value is key; e is the cache's entry for it when hit.
func (m *Manager) open(key string, t ticket, record []byte, e openEntry, hit bool) (*Session, bool) {
	c := m.opened
	if hit && bytes.Equal(e.record, record) {
		s := e.session // a copy: callers may change their session
		return &s, true
	}
	plain, err := t.open(record)
	if err != nil {
		return nil, false
	}
	s := &Session{ticket: t}
	if err := json.Unmarshal(plain, s); err != nil {
		return nil, false
	}
	// The ticket's generation hint must name this session's own user (the
	// hint is part of the cache key, so this holds for every hit too).
	if userHash(s.Identity) != t.user {
		return nil, false
	}
	// So must its logout hint: a cookie stripped of it would otherwise
	// escape back-channel logout.
	if expectedLogout(s) != t.logout {
		return nil, false
	}
	c.Put(key, openEntry{record: record, session: *s})
	return s, true
}
