import type { Ref } from 'preact';
import { useRef, useState } from 'preact/hooks';
import { isZip, projectFromDirectory, projectFromFileList, projectFromZip, type PickedProject } from '../project/read-project.ts';

export interface DropZoneProps {
  /** A single .blend: sent alone, as it always was. */
  onBlend(file: File): void;
  /** A folder or a .zip, named at once; its files follow once read. */
  onProject(name: string, reading: Promise<PickedProject>): void;
  onError(message: string): void;
}

/**
 * Where a scene enters the farm: drop or choose a .blend, a folder holding a .blend and
 * the files it uses, or a .zip of such a folder.
 */
export function DropZone(props: DropZoneProps) {
  const [dragging, setDragging] = useState(false);
  const fileInput = useRef<HTMLInputElement>(null);
  const folderInput = useRef<HTMLInputElement>(null);

  const takeFile = (file: File) => {
    if (isZip(file)) props.onProject(file.name, projectFromZip(file));
    else props.onBlend(file);
  };

  const drop = (transfer: DataTransfer) => {
    // Entries must be taken while the drop event runs: the browser empties the list after.
    const entries = [...transfer.items].filter((item) => item.kind === 'file').map((item) => item.webkitGetAsEntry());
    const files = [...transfer.files];
    if (files.length !== 1 && entries.length !== 1) {
      props.onError('Drop one .blend file, one folder or one .zip at a time.');
      return;
    }
    const entry = entries[0];
    if (entry?.isDirectory) props.onProject(entry.name, projectFromDirectory(entry as FileSystemDirectoryEntry));
    else if (files[0]) takeFile(files[0]);
  };

  return (
    <div
      class={dragging ? 'dropzone dragging' : 'dropzone'}
      data-testid="dropzone"
      onDragEnter={(e) => {
        e.preventDefault();
        setDragging(true);
      }}
      onDragOver={(e) => {
        e.preventDefault();
        if (e.dataTransfer) e.dataTransfer.dropEffect = 'copy';
      }}
      onDragLeave={(e) => {
        if (e.currentTarget === e.target) setDragging(false);
      }}
      onDrop={(e) => {
        e.preventDefault();
        setDragging(false);
        if (e.dataTransfer) drop(e.dataTransfer);
      }}
    >
      <svg class="drop-icon" viewBox="0 0 24 24" aria-hidden="true">
        <path d="M12 3v12m0-12-4 4m4-4 4 4M4 15v4a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2v-4" fill="none" stroke="currentColor" stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round" />
      </svg>
      <p>
        <span>
          Drop a <strong>.blend</strong> file, or a <strong>folder</strong> or <strong>.zip</strong> with the files it uses, here, or
        </span>
        <button type="button" class="primary" onClick={() => fileInput.current?.click()}>
          Choose a file…
        </button>
        <button type="button" onClick={() => folderInput.current?.click()}>
          Choose a folder…
        </button>
      </p>
      <input
        ref={fileInput}
        id="blend-file"
        class="visually-hidden"
        type="file"
        accept=".blend,.blend1,.zip,application/x-blender,application/zip"
        aria-label="Blender file or .zip to render"
        tabIndex={-1}
        onChange={(e) => {
          const file = e.currentTarget.files?.[0];
          if (file) takeFile(file);
          e.currentTarget.value = ''; // choosing the same file again still counts
        }}
      />
      <FolderInput inputRef={folderInput} id="project-folder" label="Project folder to render" onProject={props.onProject} onError={props.onError} />
    </div>
  );
}

/** A hidden folder picker (opened by a button): the chosen folder, read as a project, or why it cannot be. */
export function FolderInput(props: {
  inputRef: Ref<HTMLInputElement>;
  id: string;
  label: string;
  onProject(name: string, reading: Promise<PickedProject>): void;
  onError(message: string): void;
}) {
  return (
    <input
      ref={props.inputRef}
      id={props.id}
      class="visually-hidden"
      type="file"
      // @ts-expect-error: not in Preact's types, but every current browser supports it (a property: true, not "")
      webkitdirectory={true}
      aria-label={props.label}
      tabIndex={-1}
      onChange={(e) => {
        const list = e.currentTarget.files;
        if (list && list.length > 0) {
          try {
            const project = projectFromFileList(list);
            props.onProject(project.name, Promise.resolve(project));
          } catch (error) {
            props.onError((error as Error).message);
          }
        }
        e.currentTarget.value = ''; // choosing the same folder again still counts
      }}
    />
  );
}
