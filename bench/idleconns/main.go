// Command idleconns opens many idle gRPC client connections to a server and
// holds them, so that bench/run.sh can read the server's memory with those
// connections open.
//
//	idleconns -addr 127.0.0.1:50151 -n 1000 -hold 2m
//
// Each connection is a ClientConn of its own (its own TCP connection and
// HTTP/2 transport) and makes one grpc.health.v1.Health/Check, so that the
// connection is really established on both ends. When all are up it prints
// "ready N" on stdout and holds them until SIGTERM, SIGINT or -hold,
// whichever comes first; then it closes them and exits 0.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:50051", "the server's gRPC address, host:port")
	n := flag.Int("n", 1000, "how many connections to open")
	hold := flag.Duration("hold", 2*time.Minute, "how long to hold them at most")
	workers := flag.Int("workers", 32, "how many connections to open at once")
	flag.Parse()
	if err := run(*addr, *n, *workers, *hold); err != nil {
		fmt.Fprintln(os.Stderr, "idleconns:", err)
		os.Exit(1)
	}
}

func run(addr string, n, workers int, hold time.Duration) error {
	if n < 1 || workers < 1 {
		return fmt.Errorf("-n and -workers must be at least 1")
	}
	conns := make([]*grpc.ClientConn, n)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()

	// Open and check them with a few workers: one at a time is slow, all
	// at once is a SYN flood of the accept queue.
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	next := make(chan int)
	for w := 0; w < min(workers, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				c, err := open(addr)
				mu.Lock()
				conns[i] = c
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("connection %d: %w", i, err)
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}

	fmt.Printf("ready %d\n", n)
	os.Stdout.Sync()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	select {
	case <-ctx.Done():
	case <-time.After(hold):
		fmt.Fprintf(os.Stderr, "idleconns: -hold %s ran out; closing\n", hold)
	}
	return nil
}

// open makes one connection and a health check over it.
func open(addr string) (*grpc.ClientConn, error) {
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(c).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return c, err
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return c, fmt.Errorf("health: %s", resp.GetStatus())
	}
	return c, nil
}
