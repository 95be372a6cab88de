// Package kubelet reproduces, for tests, how the kubelet updates a
// ConfigMap or Secret volume (its AtomicWriter): the files go into a new
// ..TIMESTAMP directory, a ..data_tmp symlink to it is renamed over
// ..data, each visible file is a symlink through ..data, and the old
// directory is removed.
package kubelet

import (
	"os"
	"path/filepath"
)

// Update writes files (name → content) into the volume at dir the way the
// kubelet does; the first call creates the volume's layout.
func Update(dir string, files map[string]string) error {
	ts, err := os.MkdirTemp(dir, "..2026_11_27_00_00_00.")
	if err != nil {
		return err
	}
	// As the kubelet does, whatever the umask: the pod's users, not only
	// root, read the files.
	if err := os.Chmod(ts, 0o755); err != nil {
		return err
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(ts, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		return err
	}
	for name := range files {
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				return err
			}
		}
	}
	if old != "" {
		return os.RemoveAll(filepath.Join(dir, old))
	}
	return nil
}
