// Package atstart holds tini-hot's essential signals from its
// initialiser ([sighold.Hold]); the tini-hot command imports it for that
// effect.
//
// The Go specification initialises a package as soon as everything it
// imports is, taking first the package whose import path sorts first:
// this one imports only sighold, which imports only os, os/signal and
// syscall, so it is initialised right after os/signal, before the
// libraries tini-hot links (protobuf descriptors, cgroup and metrics
// probes: milliseconds). The e2e test TestSignalsHeldFirst checks the
// order on the real binary.
package atstart

import (
	// Imported for its initialiser, which reads the signal state tini-hot
	// inherited: it must run before Hold changes it.
	_ "github.com/tini-hot/tini-hot/internal/launch"
	"github.com/tini-hot/tini-hot/internal/sighold"
)

func init() { sighold.Hold() }
