package dist

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Queue is an embedded NATS server with JetStream (darwinlm queue).
type Queue struct {
	srv *server.Server
	URL string
}

// StartQueue starts a JetStream server listening on listen (HOST:PORT;
// port 0 picks a free one) that keeps its streams in store, creates the
// streams, buckets and worker consumer (with ackWait), and records Version.
func StartQueue(ctx context.Context, listen, store string, ackWait time.Duration) (*Queue, error) {
	host, ps, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("--listen %q: want HOST:PORT: %w", listen, err)
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("--listen %q: bad port", listen)
	}
	if store == "" {
		return nil, fmt.Errorf("--store is required (the folder JetStream keeps its streams in)")
	}
	if err := os.MkdirAll(store, 0o755); err != nil {
		return nil, fmt.Errorf("--store: %w", err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	srv, err := server.NewServer(&server.Options{Host: host, Port: port, JetStream: true, StoreDir: store, NoSigs: true,
		ServerName: "darwinlm-queue", MaxPayload: 8 << 20})
	if err != nil {
		return nil, fmt.Errorf("queue server: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(15 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("queue server on %s did not start (port taken?)", listen)
	}
	q := &Queue{srv: srv, URL: srv.ClientURL()}
	c, err := Connect(ctx, q.URL, "darwinlm-queue", ackWait)
	if err != nil {
		q.Stop()
		return nil, err
	}
	defer c.Close()
	if ackWait > 0 {
		if aw, err := c.ackWait(ctx); err == nil && aw != ackWait {
			fmt.Fprintf(os.Stderr, "queue: the stored worker consumer keeps its ack deadline of %s (not %s)\n", aw, ackWait)
		}
	}
	if err := c.checkVersion(ctx, "queue"); err != nil {
		q.Stop()
		return nil, err
	}
	return q, nil
}

// Stop shuts the server down (streams stay in the store folder).
func (q *Queue) Stop() {
	q.srv.Shutdown()
	q.srv.WaitForShutdown()
}
