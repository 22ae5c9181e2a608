package dist

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultAckWait is how long a task may go without a sign of life from its
// worker before JetStream hands it to another one (workers send progress
// every third of it while they compute, so long tasks are fine).
const DefaultAckWait = 30 * time.Second

// Conn is a connection to the queue with its streams and buckets.
type Conn struct {
	URL     string
	NC      *nats.Conn
	JS      jetstream.JetStream
	Tasks   jetstream.Stream
	Results jetstream.Stream
	Inputs  jetstream.ObjectStore
	Workers jetstream.KeyValue
	Meta    jetstream.KeyValue
}

// Connect reaches the queue at rawURL (failing within seconds when nothing
// answers) and makes sure the streams, the worker consumer and the buckets
// exist. ackWait is used only when the consumer is created here (the queue
// server creates it first with its own --ack-wait).
func Connect(ctx context.Context, rawURL, name string, ackWait time.Duration) (*Conn, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "nats" && u.Scheme != "tls") || u.Host == "" {
		return nil, fmt.Errorf("--queue %q: want nats://HOST:PORT", rawURL)
	}
	nc, err := nats.Connect(rawURL, nats.Name(name), nats.Timeout(3*time.Second), nats.MaxReconnects(-1),
		nats.ReconnectWait(500*time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("--queue %s: cannot reach the queue server: %w", rawURL, err)
	}
	c := &Conn{URL: rawURL, NC: nc}
	if err := c.setup(ctx, ackWait); err != nil {
		nc.Close()
		return nil, fmt.Errorf("--queue %s: %w", rawURL, err)
	}
	return c, nil
}

// Ping connects to the queue at url, checks its version and hangs up.
func Ping(ctx context.Context, url string) error {
	if ctx == nil {
		ctx = context.Background()
	}
	c, err := Connect(ctx, url, "darwinlm-ping", 0)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.checkVersion(ctx, "coordinator")
}

// Close drains nothing: every message that matters is acknowledged or
// stored before Close is reached.
func (c *Conn) Close() { c.NC.Close() }

func (c *Conn) setup(ctx context.Context, ackWait time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	js, err := jetstream.New(c.NC)
	if err != nil {
		return err
	}
	c.JS = js
	if _, err := js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("the server has no JetStream (start it with -js, or use darwinlm queue): %w", err)
	}
	c.Tasks, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: TaskStream, Subjects: []string{TaskSubject},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Duplicates: 10 * time.Minute})
	if err != nil {
		return fmt.Errorf("task stream: %w", err)
	}
	c.Results, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: ResultStream, Subjects: []string{resultPrefix + ">"},
		Storage: jetstream.FileStorage, MaxAge: 30 * 24 * time.Hour})
	if err != nil {
		return fmt.Errorf("result stream: %w", err)
	}
	if _, err := c.Tasks.Consumer(ctx, WorkerGroup); errors.Is(err, jetstream.ErrConsumerNotFound) {
		if ackWait <= 0 {
			ackWait = DefaultAckWait
		}
		if _, err := c.Tasks.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: WorkerGroup, AckPolicy: jetstream.AckExplicitPolicy,
			AckWait: ackWait, MaxAckPending: -1}); err != nil && !errors.Is(err, jetstream.ErrConsumerExists) {
			return fmt.Errorf("worker consumer: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("worker consumer: %w", err)
	}
	if c.Inputs, err = js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: InputsBucket, Storage: jetstream.FileStorage}); err != nil {
		return fmt.Errorf("object store: %w", err)
	}
	if c.Workers, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: WorkersBucket, TTL: time.Minute}); err != nil {
		return fmt.Errorf("workers bucket: %w", err)
	}
	if c.Meta, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: MetaBucket}); err != nil {
		return fmt.Errorf("meta bucket: %w", err)
	}
	return nil
}

// checkVersion compares our Version with the queue's, recording ours when
// the queue has none (a plain NATS server).
func (c *Conn) checkVersion(ctx context.Context, who string) error {
	e, err := c.Meta.Get(ctx, "version")
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		_, err = c.Meta.Create(ctx, "version", []byte(Version))
		if err == nil || errors.Is(err, jetstream.ErrKeyExists) {
			return c.checkVersion(ctx, who)
		}
		return err
	}
	if err != nil {
		return err
	}
	if v := string(e.Value()); v != Version {
		return fmt.Errorf("version mismatch: this %s is %s but the queue at %s serves %s; run the same darwinlm build everywhere (or a fresh queue: darwinlm queue --store EMPTY_DIR)", who, Version, c.URL, v)
	}
	return nil
}

// ackWait is the worker consumer's deadline.
func (c *Conn) ackWait(ctx context.Context) (time.Duration, error) {
	cons, err := c.Tasks.Consumer(ctx, WorkerGroup)
	if err != nil {
		return 0, err
	}
	return cons.CachedInfo().Config.AckWait, nil
}
