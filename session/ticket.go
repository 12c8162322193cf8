package session

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"

	"github.com/gatehouse/gatehouse/internal/sealed"
)

// A ticket is what the session cookie holds: a random session id and a
// random key, nothing else. The store keys the record by a hash of the id
// and encrypts it with the key, so whoever can read the store cannot read
// or use a session, and whoever holds a cookie learns nothing from it.
const (
	idLen     = 16
	keyLen    = 32
	ticketLen = idLen + keyLen
)

// errBadTicket means the cookie value is not a ticket we could have issued.
var errBadTicket = errors.New("session: malformed ticket")

type ticket struct {
	id  [idLen]byte
	key [keyLen]byte
}

func newTicket() (ticket, error) {
	var t ticket
	if _, err := rand.Read(t.id[:]); err != nil {
		return t, err
	}
	_, err := rand.Read(t.key[:])
	return t, err
}

func (t ticket) String() string {
	b := make([]byte, 0, ticketLen)
	b = append(append(b, t.id[:]...), t.key[:]...)
	return base64.RawURLEncoding.EncodeToString(b)
}

func parseTicket(s string) (ticket, error) {
	var t ticket
	if len(s) != base64.RawURLEncoding.EncodedLen(ticketLen) {
		return t, errBadTicket
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != ticketLen {
		return t, errBadTicket
	}
	copy(t.id[:], b[:idLen])
	copy(t.key[:], b[idLen:])
	return t, nil
}

// storeKey is where the record lives: a hash of the id, so the store never
// sees an id that could be replayed as a cookie.
func (t ticket) storeKey() string {
	h := sha256.Sum256(append([]byte("gatehouse session v1\x00"), t.id[:]...))
	return "s1:" + base64.RawURLEncoding.EncodeToString(h[:])
}

// publicID is a hash of the id safe to show upstream (the assertion's sid)
// and in logs; it is distinct from storeKey so it cannot be used to look a
// record up.
func (t ticket) publicID() string {
	h := sha256.Sum256(append([]byte("gatehouse sid v1\x00"), t.id[:]...))
	return base64.RawURLEncoding.EncodeToString(h[:16])
}

// seal encrypts plaintext with the ticket's key. The store key is the
// associated data, so a record copied under another key does not open.
func (t ticket) seal(plaintext []byte) ([]byte, error) {
	return sealed.Seal(&t.key, []byte(t.storeKey()), plaintext)
}

func (t ticket) open(record []byte) ([]byte, error) {
	return sealed.Open(&t.key, []byte(t.storeKey()), record)
}
