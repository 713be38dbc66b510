package bench

import (
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Dial connects to a CRI unix socket endpoint such as
// unix:///run/crid/crid.sock (a bare absolute path is accepted too).
func Dial(endpoint string) (*grpc.ClientConn, error) {
	if !strings.HasPrefix(endpoint, "unix://") {
		if !strings.HasPrefix(endpoint, "/") {
			return nil, fmt.Errorf("endpoint %q: want unix:///path", endpoint)
		}
		endpoint = "unix://" + endpoint
	}
	conn, err := grpc.NewClient(endpoint,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", endpoint, err)
	}
	return conn, nil
}
