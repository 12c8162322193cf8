// Package sealed encrypts and authenticates small records with AES-256-GCM.
// It is what keeps session and token records in the store unreadable and
// unforgeable without the key their owner holds.
package sealed

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
)

// ErrOpen means a record did not decrypt: wrong key, wrong associated
// data, or tampered or truncated bytes.
var ErrOpen = errors.New("sealed: cannot open record")

// Seal encrypts plaintext with key. aad binds the record to its context
// (such as the store key it lives under): opening it elsewhere fails.
func Seal(key *[32]byte, aad, plaintext []byte) ([]byte, error) {
	aead := newAEAD(key)
	out := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		return nil, err
	}
	return aead.Seal(out, out, plaintext, aad), nil
}

// Open decrypts a record made by Seal with the same key and aad.
func Open(key *[32]byte, aad, record []byte) ([]byte, error) {
	aead := newAEAD(key)
	if len(record) < aead.NonceSize()+aead.Overhead() {
		return nil, ErrOpen
	}
	plain, err := aead.Open(nil, record[:aead.NonceSize()], record[aead.NonceSize():], aad)
	if err != nil {
		return nil, ErrOpen
	}
	return plain, nil
}

func newAEAD(key *[32]byte) cipher.AEAD {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		panic(err) // a 32-byte key cannot fail
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return aead
}
