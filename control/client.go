package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNotRunning is matched (errors.Is) by the error of a client that
// found no server at the path: no socket file, or a stale one.
var ErrNotRunning = errors.New("no server at the control socket")

// notRunning is the error of Do when nothing listens at the path.
type notRunning struct{ err error }

func (e notRunning) Error() string        { return e.err.Error() }
func (e notRunning) Unwrap() error        { return e.err }
func (e notRunning) Is(target error) bool { return target == ErrNotRunning }

// TimeoutError is a request whose answer did not come before its
// context ended. Sent says whether the whole request reached the server,
// which then goes on with it (a reload is not undone).
type TimeoutError struct {
	Sent bool
	Err  error // the context's error
}

func (e *TimeoutError) Error() string {
	if e.Sent {
		return "no answer yet: " + e.Err.Error()
	}
	return "request not sent: " + e.Err.Error()
}

func (e *TimeoutError) Unwrap() error { return e.Err }

// Do sends req to the server at path and returns its response. ctx
// bounds the whole exchange.
func Do(ctx context.Context, path string, req Request) (Response, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if ctx.Err() != nil {
			return Response{}, &TimeoutError{Err: ctx.Err()}
		}
		var errno unix.Errno
		if errors.As(err, &errno) && (errno == unix.ENOENT || errno == unix.ECONNREFUSED) {
			return Response{}, notRunning{fmt.Errorf("control socket %s: %w", path, errno)}
		}
		return Response{}, fmt.Errorf("control socket %s: %w", path, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	b, _ := json.Marshal(req) // a Request always marshals
	_, werr := c.Write(append(b, '\n'))
	// Read even when the write failed: a server that refuses a client
	// answers why and closes before reading the request.
	line, err := bufio.NewReader(c).ReadBytes('\n')
	switch {
	case err != nil && (ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded)):
		// The connection's deadline is the context's: it may pass a
		// moment before the context notices.
		cerr := ctx.Err()
		if cerr == nil {
			cerr = context.DeadlineExceeded
		}
		return Response{}, &TimeoutError{Sent: werr == nil, Err: cerr}
	case err != nil && werr != nil:
		return Response{}, fmt.Errorf("control socket %s: send: %w", path, werr)
	case err != nil:
		return Response{}, fmt.Errorf("control socket %s: no answer: %w", path, err)
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return Response{}, fmt.Errorf("control socket %s: bad answer: %w", path, err)
	}
	return resp, nil
}
