// Package quicid gives a quic-go server the connection IDs that tini-hot
// steers by: their first byte is the server's slot (TINI_HOT_SLOT), so
// that every packet of a connection reaches the generation that owns it,
// across upgrades, when its listener has ?flows=quic.
//
// Use it as the Transport's ConnectionIDGenerator:
//
//	gen, err := quicid.FromEnv()
//	tr := &quic.Transport{Conn: udpConn, ConnectionIDGenerator: gen}
//
// Any QUIC stack that lets the server choose its connection IDs can do
// the same: IDs shorter than 8 bytes (a client's first DCID has at least
// 8, RFC 9000 §7.2, and is how tini-hot tells a new connection) whose
// first byte is the slot number.
package quicid

import (
	"crypto/rand"
	"fmt"
	"os"
	"strconv"

	"github.com/quic-go/quic-go"
)

// Len is the length of the connection IDs: the slot byte and 6 random
// bytes, below the 8 of a client's first DCID.
const Len = 7

// SlotEnv is the variable tini-hot puts the slot in.
const SlotEnv = "TINI_HOT_SLOT"

// Generator makes connection IDs that start with Slot.
type Generator struct {
	Slot byte
}

// FromEnv is the Generator of the slot in TINI_HOT_SLOT.
func FromEnv() (*Generator, error) {
	v := os.Getenv(SlotEnv)
	slot, err := strconv.ParseUint(v, 10, 8)
	if err != nil {
		return nil, fmt.Errorf("%s=%q: want the slot number tini-hot gives a steered listener's generation (0-255): %w", SlotEnv, v, err)
	}
	return &Generator{Slot: byte(slot)}, nil
}

// GenerateConnectionID is the slot byte followed by random bytes.
func (g *Generator) GenerateConnectionID() (quic.ConnectionID, error) {
	b := make([]byte, Len)
	b[0] = g.Slot
	if _, err := rand.Read(b[1:]); err != nil {
		return quic.ConnectionID{}, err
	}
	return quic.ConnectionIDFromBytes(b), nil
}

// ConnectionIDLen is Len.
func (g *Generator) ConnectionIDLen() int { return Len }

var _ quic.ConnectionIDGenerator = (*Generator)(nil)
