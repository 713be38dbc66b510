package streaming

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
)

// Upgraded (hijacked) connections are invisible to net/http: their request
// context is not cancelled when the client goes away, and http.Server.Close
// leaves them open. Tracking every accepted connection gives us both: a
// per-connection context cancelled when the peer hangs up (a read fails) or
// the connection is closed, and a list to close on Stop.

type trackingListener struct {
	net.Listener
	srv *Server
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(l.srv.ctx)
	tc := &trackedConn{Conn: c, srv: l.srv, key: connKey(c.RemoteAddr(), c.LocalAddr()), ctx: ctx, cancel: cancel}
	l.srv.mu.Lock()
	l.srv.conns[tc.key] = tc
	l.srv.mu.Unlock()
	return tc, nil
}

// trackedConn is done once Close is called or a read fails for any reason
// other than a deadline: the peer closed or reset the connection.
type trackedConn struct {
	net.Conn
	srv    *Server
	key    string
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
}

func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			c.finish()
		}
	}
	return n, err
}

func (c *trackedConn) Close() error {
	c.finish()
	return c.Conn.Close()
}

func (c *trackedConn) finish() {
	c.once.Do(func() {
		c.cancel()
		c.srv.mu.Lock()
		if c.srv.conns[c.key] == c {
			delete(c.srv.conns, c.key)
		}
		c.srv.mu.Unlock()
	})
}

func connKey(remote, local net.Addr) string {
	return remote.String() + "|" + local.String()
}

// connContext makes every request's context end with its connection, so
// an exec or attach whose client hangs up is cancelled in the backend.
func (s *Server) connContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	tc, ok := c.(*trackedConn)
	if !ok {
		return ctx
	}
	ctx, cancel := context.WithCancel(ctx)
	context.AfterFunc(tc.ctx, cancel)
	return ctx
}

// streamConnContext finds the client connection a port-forward stream rides
// on. cri-streaming passes port forwards a background context, but SPDY
// streams expose their connection's addresses, which identify it. ok is
// false when the stream does not say (WebSocket channels).
func (s *Server) streamConnContext(stream any) (ctx context.Context, ok bool) {
	addrs, isAddr := stream.(interface {
		RemoteAddr() net.Addr
		LocalAddr() net.Addr
	})
	if !isAddr {
		return nil, false
	}
	s.mu.Lock()
	tc := s.conns[connKey(addrs.RemoteAddr(), addrs.LocalAddr())]
	s.mu.Unlock()
	if tc == nil {
		// Already gone: the client connection ended.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		return ctx, true
	}
	return tc.ctx, true
}
