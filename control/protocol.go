package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Operations.
const (
	OpReload = "reload"
	OpStatus = "status"
	// OpProbe answers OK while a ready generation serves and no
	// termination is announced (readiness), or whenever the supervisor
	// answers (Liveness).
	OpProbe = "probe"
	// OpPrestop announces that termination is coming: probe fails from
	// then on and reloads are refused, until SIGTERM, or until the
	// announcement is withdrawn (Cancel, or no SIGTERM within the grace
	// period).
	OpPrestop = "prestop"
)

// MaxRequestSize bounds a request; larger ones are refused.
const MaxRequestSize = 64 << 10

// Request is what a client asks.
type Request struct {
	Op string `json:"op"`
	// WaitDrained (reload): answer once the old generation has exited,
	// not only once the new one serves.
	WaitDrained bool `json:"wait_drained,omitempty"`
	// Liveness (probe): only check that the supervisor answers.
	Liveness bool `json:"liveness,omitempty"`
	// Cancel (prestop): withdraw a prestop's announcement.
	Cancel bool `json:"cancel,omitempty"`
}

// Response is the server's answer. OK false comes with Error, one line.
type Response struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// Generation (reload, probe, prestop): the generation now serving.
	Generation int `json:"generation,omitempty"`
	// Status (status) is the supervisor's status document, which this
	// package carries without reading it.
	Status json.RawMessage `json:"status,omitempty"`
}

// ParseRequest decodes and checks one request.
func ParseRequest(b []byte) (Request, error) {
	var req Request
	if len(b) > MaxRequestSize {
		return req, fmt.Errorf("request larger than %d bytes", MaxRequestSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return Request{}, fmt.Errorf("malformed request: %w", err)
	}
	if dec.More() {
		return Request{}, errors.New("malformed request: more than one JSON value")
	}
	if req.WaitDrained && req.Op != OpReload {
		return Request{}, errors.New("malformed request: wait_drained is for reload")
	}
	if req.Liveness && req.Op != OpProbe {
		return Request{}, errors.New("malformed request: liveness is for probe")
	}
	if req.Cancel && req.Op != OpPrestop {
		return Request{}, errors.New("malformed request: cancel is for prestop")
	}
	switch req.Op {
	case OpReload, OpStatus, OpProbe, OpPrestop:
	case "":
		return Request{}, errors.New("malformed request: no op")
	default:
		return Request{}, fmt.Errorf("unknown op %q", req.Op)
	}
	return req, nil
}
