package quicid

import (
	"testing"

	"github.com/tini-hot/tini-hot/internal/steer"
)

func TestGenerator(t *testing.T) {
	t.Setenv(SlotEnv, "5")
	g, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if Len >= steer.MinClientDCID {
		t.Fatalf("Len %d: a server's IDs must be shorter than a client's first DCID (%d)", Len, steer.MinClientDCID)
	}
	seen := map[string]bool{}
	for range 100 {
		id, err := g.GenerateConnectionID()
		if err != nil {
			t.Fatal(err)
		}
		if id.Len() != g.ConnectionIDLen() || id.Bytes()[0] != 5 {
			t.Fatalf("id % x", id.Bytes())
		}
		seen[string(id.Bytes())] = true
	}
	if len(seen) != 100 {
		t.Fatalf("%d distinct ids of 100", len(seen))
	}
	for _, bad := range []string{"", "x", "256", "-1"} {
		t.Setenv(SlotEnv, bad)
		if _, err := FromEnv(); err == nil {
			t.Errorf("%s=%q accepted", SlotEnv, bad)
		}
	}
}
