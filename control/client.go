package control

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"time"
)

// Do sends req to the server at path and returns its response. ctx
// bounds the whole exchange.
func Do(ctx context.Context, path string, req Request) (Response, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
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
	if err != nil && werr != nil {
		return Response{}, fmt.Errorf("control socket %s: send: %w", path, werr)
	}
	if err != nil {
		if ctx.Err() != nil {
			return Response{}, ctx.Err()
		}
		return Response{}, fmt.Errorf("control socket %s: no answer: %w", path, err)
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return Response{}, fmt.Errorf("control socket %s: bad answer: %w", path, err)
	}
	return resp, nil
}
