package supervisor

import "github.com/kato-manager/kato-manager/config"

// StopTarget is the instance stop is asked for by ref, an ID or a name,
// found without systemd: the registered instance's ID; or ref itself for an
// instance with unit files but no registry entry, which can still be stopped
// by its ID, and whose ID wins over a part of a name. Anything else unknown
// is refused with the registry's error.
func StopTarget(r *config.RegistryFile, paths config.Paths, ref string) (string, error) {
	var inst *config.Instance
	reg, err := r.Load()
	if err == nil {
		inst, err = reg.Match(ref)
	}
	switch orphan := paths.HasInstanceFiles(ref); {
	case err == nil && (!orphan || inst.ID == ref || inst.Name == ref):
		return inst.ID, nil
	case err != nil && !orphan:
		return "", err
	}
	return ref, nil
}
