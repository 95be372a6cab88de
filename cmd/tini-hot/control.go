package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/tini-hot/tini-hot/control"
	"github.com/tini-hot/tini-hot/upgrade"
)

// handler adapts the supervisor's typed methods to the control socket's
// wire protocol.
func handler(sup *upgrade.Supervisor) control.Handler {
	return func(ctx context.Context, req control.Request) control.Response {
		var gen int
		var err error
		switch req.Op {
		case control.OpReload:
			gen, err = sup.Reload(ctx, req.WaitDrained, "control socket")
		case control.OpProbe:
			gen, err = sup.Probe(ctx, req.Liveness)
		case control.OpPrestop:
			gen, err = sup.Prestop(ctx, req.Cancel)
		case control.OpStatus:
			st, serr := sup.Status(ctx)
			if serr != nil {
				return control.Response{Error: serr.Error()}
			}
			b, _ := json.Marshal(st) // a Status always marshals
			return control.Response{OK: true, Status: b}
		default:
			err = fmt.Errorf("unknown op %q", req.Op)
		}
		if err != nil {
			return control.Response{Error: err.Error()}
		}
		return control.Response{OK: true, Generation: gen}
	}
}
