// Package deploy holds no chatd code: its tests keep the deployment files
// (Dockerfile, docker-compose.yml, deploy/nginx, deploy/kubernetes, deploy/k6
// and docs/operations.md) in line with the server they run, since Docker and
// Kubernetes do not run where CI does.
//
// It is a module of its own so that compose-go and the Kubernetes API types
// stay out of the server's go.mod. Run its tests from this folder:
//
//	cd deploy && go test ./...
package deploy
