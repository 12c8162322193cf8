package session

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"

	"github.com/gatehouse/gatehouse/internal/sealed"
)

// A ticket is what the session cookie holds: a random session id, a
// random key, and the hash that names the user's generation record. The
// store keys the record by a hash of the id and encrypts it with the key,
// so whoever can read the store cannot read or use a session, and whoever
// holds a cookie learns nothing from it. The generation hash lets Load
// fetch the session and its user's generation in one round trip; it is a
// hint only, checked against the decrypted identity.
const (
	idLen     = 16
	keyLen    = 32
	userLen   = sha256.Size
	ticketLen = idLen + keyLen + userLen
	// logoutLen is the optional back-channel logout hint at the end of a
	// ticket: the hash naming the provider-session record the session is
	// bound to (see logout.go).
	logoutLen = sha256.Size
)

// storeKeyPrefix begins every session record's store key.
const storeKeyPrefix = "s1:"

// errBadTicket means the cookie value is not a ticket we could have issued.
var errBadTicket = errors.New("session: malformed ticket")

type ticket struct {
	id   [idLen]byte
	key  [keyLen]byte
	user [userLen]byte // userHash of the identity the session is for
	// logout names the session's back-channel logout record; zero: the
	// session has none.
	logout [logoutLen]byte

	names *ticketNames // derived once per ticket (see derive)
}

// ticketNames are the names derived from a ticket, each a hash or an
// encoding that would otherwise be recomputed several times per request.
type ticketNames struct {
	storeKey, generationKey, publicID string
	logoutKey                         string // "" when the ticket has no logout hint
}

func newTicket(user [userLen]byte) (ticket, error) {
	t := ticket{user: user}
	if _, err := rand.Read(t.id[:]); err != nil {
		return t, err
	}
	if _, err := rand.Read(t.key[:]); err != nil {
		return t, err
	}
	return t.derive(), nil
}

func (t ticket) derive() ticket {
	sk := sha256.Sum256(append([]byte("gatehouse session v1\x00"), t.id[:]...))
	pid := sha256.Sum256(append([]byte("gatehouse sid v1\x00"), t.id[:]...))
	t.names = &ticketNames{
		storeKey:      storeKeyPrefix + base64.RawURLEncoding.EncodeToString(sk[:]),
		generationKey: generationKeyOf(t.user),
		publicID:      base64.RawURLEncoding.EncodeToString(pid[:16]),
	}
	if t.logout != ([logoutLen]byte{}) {
		t.names.logoutKey = logoutKeyOf(t.logout)
	}
	return t
}

func (t ticket) String() string {
	b := make([]byte, 0, ticketLen+logoutLen)
	b = append(append(append(b, t.id[:]...), t.key[:]...), t.user[:]...)
	if t.logout != ([logoutLen]byte{}) {
		b = append(b, t.logout[:]...)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// generationKey is where the user's generation record lives.
func (t ticket) generationKey() string { return t.names.generationKey }

func parseTicket(s string) (ticket, error) {
	var t ticket
	n := len(s)
	if n != base64.RawURLEncoding.EncodedLen(ticketLen) && n != base64.RawURLEncoding.EncodedLen(ticketLen+logoutLen) {
		return t, errBadTicket
	}
	// Strict: a ticket has one spelling (unused trailing bits must be
	// zero), so no two cookie values name the same session.
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || (len(b) != ticketLen && len(b) != ticketLen+logoutLen) {
		return t, errBadTicket
	}
	copy(t.id[:], b[:idLen])
	copy(t.key[:], b[idLen:idLen+keyLen])
	copy(t.user[:], b[idLen+keyLen:ticketLen])
	copy(t.logout[:], b[ticketLen:])
	if len(b) > ticketLen && t.logout == ([logoutLen]byte{}) {
		return t, errBadTicket // the long form always carries a hint
	}
	return t.derive(), nil
}

// storeKey is where the record lives: a hash of the id, so the store never
// sees an id that could be replayed as a cookie.
func (t ticket) storeKey() string { return t.names.storeKey }

// publicID is a hash of the id safe to show upstream (the assertion's sid)
// and in logs; it is distinct from storeKey so it cannot be used to look a
// record up.
func (t ticket) publicID() string { return t.names.publicID }

// seal encrypts plaintext with the ticket's key. The store key is the
// associated data, so a record copied under another key does not open.
func (t ticket) seal(plaintext []byte) ([]byte, error) {
	return sealed.Seal(&t.key, []byte(t.storeKey()), plaintext)
}

func (t ticket) open(record []byte) ([]byte, error) {
	return sealed.Open(&t.key, []byte(t.storeKey()), record)
}
