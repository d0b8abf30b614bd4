import { useState } from 'preact/hooks';
import { bytes } from '../format.ts';
import type { PickedProject } from '../project/read-project.ts';

/**
 * A folder or .zip with several .blend files: the user says which one to render (the
 * others, libraries most often, go along as the project's files). The shallowest is
 * offered first.
 */
export function ProjectPicker(props: { project: PickedProject; onSubmit: (main: string) => void; onCancel: () => void }) {
  const { project } = props;
  const [main, setMain] = useState(project.blends[0]!);
  const size = project.files.reduce((sum, file) => sum + file.blob.size, 0);
  return (
    <form
      class="project-picker"
      data-testid="project-picker"
      onSubmit={(e) => {
        e.preventDefault();
        props.onSubmit(main);
      }}
    >
      <p>
        <strong>{project.name}</strong> · {project.files.length} files, {bytes(size)}. It holds {project.blends.length} .blend files: which one is
        the scene to render?
      </p>
      <div class="field">
        <label for="project-main">Main .blend</label>
        <select id="project-main" value={main} onChange={(e) => setMain(e.currentTarget.value)}>
          {project.blends.map((path) => (
            <option key={path} value={path}>
              {path}
            </option>
          ))}
        </select>
      </div>
      <div class="actions">
        <button type="submit" class="primary">
          Submit project
        </button>
        <button type="button" onClick={props.onCancel}>
          Choose another
        </button>
      </div>
    </form>
  );
}
