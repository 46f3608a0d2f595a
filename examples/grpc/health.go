package main

import (
	"context"
	"time"

	"github.com/drainhttp/drainhttp"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// serviceName is the one service the health service knows besides "" (the
// whole server).
const serviceName = "drainhttp.example.Echo"

// watchPoll is how often Watch looks at the server's readiness.
const watchPoll = 100 * time.Millisecond

// healthService is grpc.health.v1.Health, the standard gRPC health service
// (https://github.com/grpc/grpc/blob/master/doc/health-checking.md), backed
// by a drainhttp.Server's readiness: SERVING until the server starts
// draining (or its health check is failed), NOT_SERVING from then on, so
// that gRPC load balancers and health-checking clients stop sending new
// traffic while the server keeps serving what it still gets.
//
// Watch is a server-streaming call that would otherwise last as long as the
// client wants. It ends, with status OK, when its HTTP/2 connection starts
// draining (drainhttp.Draining), so that the connection can close long
// before its drain deadline and the client watches again on a new one.
type healthService struct {
	healthpb.UnimplementedHealthServer
	ready func() bool
}

func (h *healthService) status(service string) (healthpb.HealthCheckResponse_ServingStatus, bool) {
	if service != "" && service != serviceName {
		return healthpb.HealthCheckResponse_SERVICE_UNKNOWN, false
	}
	if h.ready() {
		return healthpb.HealthCheckResponse_SERVING, true
	}
	return healthpb.HealthCheckResponse_NOT_SERVING, true
}

// Check answers the service's status; an unknown service is NOT_FOUND, as
// the health-checking protocol says.
func (h *healthService) Check(_ context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	st, ok := h.status(req.GetService())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "unknown service %q", req.GetService())
	}
	return &healthpb.HealthCheckResponse{Status: st}, nil
}

// List answers the status of every known service.
func (h *healthService) List(context.Context, *healthpb.HealthListRequest) (*healthpb.HealthListResponse, error) {
	resp := &healthpb.HealthListResponse{Statuses: make(map[string]*healthpb.HealthCheckResponse, 2)}
	for _, name := range []string{"", serviceName} {
		st, _ := h.status(name)
		resp.Statuses[name] = &healthpb.HealthCheckResponse{Status: st}
	}
	return resp, nil
}

// Watch sends the service's status, then every change of it, until its
// connection starts draining: then it sends the status once more if it has
// changed (in a server-wide drain it is NOT_SERVING by then) and returns OK.
func (h *healthService) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	ctx := stream.Context()
	// grpc.Server.ServeHTTP derives the stream's context from the HTTP
	// request's, so drainhttp's connection record is in it.
	draining := drainhttp.Draining(ctx)
	tick := time.NewTicker(watchPoll)
	defer tick.Stop()
	sent := healthpb.HealthCheckResponse_ServingStatus(-1)
	for {
		if st, _ := h.status(req.GetService()); st != sent {
			if err := stream.Send(&healthpb.HealthCheckResponse{Status: st}); err != nil {
				return err
			}
			sent = st
		}
		select {
		case <-tick.C:
		case <-draining:
			if st, _ := h.status(req.GetService()); st != sent {
				return stream.Send(&healthpb.HealthCheckResponse{Status: st})
			}
			return nil
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}
