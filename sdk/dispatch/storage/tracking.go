package storage

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
)

// TrackingTokenBytes is the size of a customer tracking token's random part: 128 bits.
const TrackingTokenBytes = 16

// ErrBadToken is returned for a string that cannot be a tracking token. Callers answer it like an unknown
// token (404): it says nothing an attacker could use.
var ErrBadToken = errors.New("storage: not a tracking token")

// NewTrackingToken returns a fresh tracking token (128 bits from crypto/rand, base64url without padding:
// 22 characters) and its lookup key.
func NewTrackingToken() (token string, key [sha256.Size]byte) {
	b := make([]byte, TrackingTokenBytes)
	rand.Read(b) // never fails (crypto/rand: it crashes the program instead)
	token = base64.RawURLEncoding.EncodeToString(b)
	return token, TrackingKey(token)
}

// TrackingKey is the key a token is looked up by: its SHA-256. An engine indexes tokens by it, so the
// lookup's timing depends on a hash the caller cannot steer, and then compares the stored token with the
// given one in constant time.
func TrackingKey(token string) [sha256.Size]byte { return sha256.Sum256([]byte(token)) }

// CheckTrackingToken refuses strings of the wrong shape before any lookup.
func CheckTrackingToken(token string) error {
	if len(token) != base64.RawURLEncoding.EncodedLen(TrackingTokenBytes) {
		return ErrBadToken
	}
	if _, err := base64.RawURLEncoding.DecodeString(token); err != nil {
		return ErrBadToken
	}
	return nil
}
