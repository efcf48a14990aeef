package generate

import (
	"errors"

	"github.com/meshplane/meshplane/internal/model"
	"github.com/meshplane/meshplane/internal/xds"
)

func sidecarResources(world *model.World, proxy *model.Proxy) (xds.Resources, error) {
	return nil, errors.New("not yet")
}
