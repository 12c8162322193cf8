package session

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/gatehouse/gatehouse/sessionstore"
)

// Back-channel logout. A provider's logout token names its own session
// (sid) or its user (sub), never a Gatehouse session, so sessions from a
// provider that may send one are listed at sign-in under both names, in
// index records of the shared store. Ending them deletes their records,
// which every replica notices at the next request (Load reads the record
// each time). The index holds store keys only: it says which records
// exist, never what is in them, and a store key cannot be used as a
// cookie.

// indexEntryLen is the length of one index entry: a store key and '\n'.
var indexEntryLen = len(storeKeyPrefix) + base64.RawURLEncoding.EncodedLen(sha256.Size) + 1

// logoutIndexKey names the index of provider's sessions of one kind
// ("sid" or "sub") and value.
func logoutIndexKey(provider, kind, value string) string {
	h := sha256.Sum256([]byte("gatehouse logout index v1\x00" + provider + "\x00" + kind + "\x00" + value))
	return "bl1:" + base64.RawURLEncoding.EncodeToString(h[:])
}

// IndexForLogout lists s under its provider session id (when the provider
// gave one) and under its subject, so that EndProviderSessions finds it.
// A sign-in whose index cannot be written must not go on: nothing could
// end that session from the provider's side.
func (m *Manager) IndexForLogout(ctx context.Context, s *Session) error {
	entry := []byte(s.ticket.storeKey() + "\n")
	keys := []string{logoutIndexKey(s.Identity.Provider, "sub", s.Identity.Subject)}
	if s.Token != nil && s.Token.SID != "" {
		keys = append(keys, logoutIndexKey(s.Identity.Provider, "sid", s.Token.SID))
	}
	for _, k := range keys {
		// The index lives as long as the longest session it lists.
		if err := m.store.Append(ctx, k, entry, m.cfg.Lifetime); err != nil {
			return fmt.Errorf("session store: %w", err)
		}
	}
	return nil
}

// EndProviderSessions ends what a back-channel logout names: the sessions
// begun under provider session sid, or, when sid is empty, every session
// of subject from provider. It returns how many records it deleted.
func (m *Manager) EndProviderSessions(ctx context.Context, provider, sid, subject string) (int, error) {
	key := logoutIndexKey(provider, "sub", subject)
	if sid != "" {
		key = logoutIndexKey(provider, "sid", sid)
	}
	list, err := m.store.Get(ctx, key)
	if errors.Is(err, sessionstore.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range bytes.Split(list, []byte("\n")) {
		if len(e)+1 != indexEntryLen || !bytes.HasPrefix(e, []byte(storeKeyPrefix)) {
			continue // empty tail, or a torn entry
		}
		if err := m.store.Delete(ctx, string(e)); err != nil {
			return n, err
		}
		n++
	}
	return n, m.store.Delete(ctx, key)
}
