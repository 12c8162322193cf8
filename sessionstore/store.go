// Package sessionstore keeps opaque, already-encrypted records by key, in
// memory (one replica) or in memcached (many replicas). It knows nothing of
// what the records mean; package session does.
package sessionstore

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned by Get, Replace and Touch for a key that holds
// nothing (never set, deleted or expired).
var ErrNotFound = errors.New("sessionstore: not found")

// ErrExists is returned by Add when the key already holds a record.
var ErrExists = errors.New("sessionstore: key exists")

// Store is a key-value store with expiry. Implementations must be safe for
// concurrent use. Any error other than ErrNotFound and ErrExists means the
// store could not answer, and callers must fail closed.
type Store interface {
	// Get returns the record under key or ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// GetMulti returns the records under keys that hold one, in one round
	// trip (keys on different servers are asked at the same time). A key
	// that holds nothing is absent from the map; any error means the store
	// could not answer for every key.
	GetMulti(ctx context.Context, keys []string) (map[string][]byte, error)
	// Set stores value under key for ttl, replacing what was there.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Add stores value only if key holds nothing, else returns ErrExists.
	// It is the building block for single-use codes.
	Add(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Replace stores value for ttl only if key holds a record, else
	// returns ErrNotFound and stores nothing. Every write to a record that
	// must already exist (a session's idle clock, a revalidated session)
	// uses it, so a record deleted meanwhile (signed out) is not re-created.
	Replace(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Touch gives the record under key a new ttl, counted from now,
	// without changing its value, or returns ErrNotFound. Unlike a Set of
	// a value read earlier, it cannot undo a concurrent write.
	Touch(ctx context.Context, key string, ttl time.Duration) error
	// Append adds value at the end of the record under key, creating the
	// record (for ttl) when key holds nothing, then gives the record ttl,
	// counted from now, as Touch does. It is for small index records, a
	// list of fixed-size entries (the session keys of one user): callers
	// pass the same ttl for a key, the lifetime of what is listed, so that
	// each append keeps the list alive as long as its newest entry.
	//
	// An append is atomic where the record is kept (memcached's append on
	// each replica): concurrent appends each end up in the record once, in
	// some order, and a record another Append creates meanwhile is
	// appended to, never overwritten (the create is retried as an append,
	// a bounded number of times). Unlike reading the list and setting it
	// again, it cannot replace the list by an older copy. Readers must
	// tolerate an entry missing: with several replicas, one that failed
	// or lost the record may miss entries, and the record may be evicted
	// like any other. Append fails (a store error) when no replica stored
	// the value, including when the record would outgrow the store's item
	// size limit.
	Append(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Delete removes key; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// Ping reports whether the store can serve requests (readiness).
	Ping(ctx context.Context) error
}

// MaxFew is how many keys GetFew reads at once.
const MaxFew = 3

// FewGetter is implemented by stores that can read a few records without
// building a map (the memory store): the session of every request reads
// two or three keys, and a map and copies per request are measurable.
type FewGetter interface {
	// GetFew is GetMulti for at most MaxFew keys: recs[i] is the record
	// under keys[i], nil when it holds none (or keys[i] is ""); a record
	// found is never nil, even when empty. The records may be the
	// store's own bytes: callers must not modify them.
	GetFew(ctx context.Context, keys [MaxFew]string) (recs [MaxFew][]byte, err error)
}

// GetFew reads keys from s in one round trip: with s's own GetFew when it
// has one, else with GetMulti. The arrays are passed by value so that
// neither escapes to the heap. Callers must not modify the records.
func GetFew(ctx context.Context, s Store, keys [MaxFew]string) ([MaxFew][]byte, error) {
	if f, ok := s.(FewGetter); ok {
		return f.GetFew(ctx, keys)
	}
	var out [MaxFew][]byte
	list := make([]string, 0, MaxFew)
	for _, k := range keys {
		if k != "" {
			list = append(list, k)
		}
	}
	recs, err := s.GetMulti(ctx, list)
	if err != nil {
		return out, err
	}
	for i, k := range keys {
		if v, ok := recs[k]; ok && k != "" {
			out[i] = present(v)
		}
	}
	return out, nil
}

// present is v, made non-nil (an empty record found is not a miss).
func present(v []byte) []byte {
	if v == nil {
		return []byte{}
	}
	return v
}
