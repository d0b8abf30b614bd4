import type { ComponentChildren } from 'preact';
import { useEffect, useId, useRef, useState } from 'preact/hooks';
import type { Job } from '../../../src/protocol/index.ts';
import { stateLabels } from '../format.ts';
import { farm } from '../store.ts';

/**
 * A modal dialog on the native <dialog>: the page behind is inert (focus stays inside),
 * Escape and the close button close it, and focus returns to where it was.
 */
export function Dialog(props: {
  title: string;
  onClose: () => void;
  children: ComponentChildren;
  wide?: boolean;
  labelId?: string;
  /** Where focus goes back to if the element that opened the dialog is gone by then. */
  returnFocus?: () => HTMLElement | null;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const generated = useId();
  const titleId = props.labelId ?? `dialog-${generated}`;
  // Taken while rendering, before anything else can move focus.
  const opener = useRef(document.activeElement as HTMLElement | null);
  const returnFocus = useRef(props.returnFocus);
  useEffect(() => {
    const dialog = ref.current!;
    dialog.showModal();
    const first = dialog.querySelector<HTMLElement>('[data-autofocus]');
    first?.focus();
    return () => {
      if (dialog.open) dialog.close();
      const previous = opener.current;
      const target = previous && previous !== document.body && document.contains(previous) ? previous : returnFocus.current?.();
      target?.focus();
    };
  }, []);
  return (
    <dialog
      ref={ref}
      class={props.wide ? 'dialog wide' : 'dialog'}
      aria-labelledby={titleId}
      onCancel={(event) => {
        event.preventDefault();
        props.onClose();
      }}
      onClick={(event) => {
        // A click on the backdrop (the dialog element itself, outside its content) closes it.
        if (event.target === ref.current) props.onClose();
      }}
    >
      <div class="dialog-body">
        <header class="dialog-head">
          <h2 id={titleId}>{props.title}</h2>
          <button type="button" class="icon-button" aria-label="Close" onClick={props.onClose}>
            ×
          </button>
        </header>
        {props.children}
      </div>
    </dialog>
  );
}

/** Asks before something that cannot be undone. */
export function ConfirmDialog(props: {
  title: string;
  message: ComponentChildren;
  confirmLabel: string;
  onConfirm: () => Promise<unknown>;
  onClose: () => void;
}) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const confirm = async () => {
    setBusy(true);
    setError(null);
    try {
      await props.onConfirm();
      props.onClose();
    } catch (e) {
      setError((e as Error).message);
      setBusy(false);
    }
  };
  return (
    <Dialog title={props.title} onClose={props.onClose}>
      <div class="dialog-message">{props.message}</div>
      {error && (
        <p class="form-error" role="alert">
          {error}
        </p>
      )}
      <div class="dialog-actions">
        <button type="button" data-autofocus onClick={props.onClose}>
          Keep it
        </button>
        <button type="button" class="danger" disabled={busy} onClick={confirm}>
          {busy ? 'Working…' : props.confirmLabel}
        </button>
      </div>
    </Dialog>
  );
}

export function StateBadge({ state }: { state: Job['state'] }) {
  return (
    <span class="badge" data-state={state}>
      {stateLabels[state]}
    </span>
  );
}

export function ProgressBar(props: { value: number; max: number; label: string; failed?: number; state?: string }) {
  const pct = props.max > 0 ? Math.min(100, (100 * props.value) / props.max) : 0;
  const failedPct = props.max > 0 && props.failed ? Math.min(100 - pct, (100 * props.failed) / props.max) : 0;
  return (
    <div
      class="progress"
      role="progressbar"
      aria-label={props.label}
      aria-valuemin={0}
      aria-valuemax={props.max}
      aria-valuenow={props.value}
      data-state={props.state}
    >
      <span class="progress-done" style={{ width: `${pct}%` }} />
      {failedPct > 0 && <span class="progress-failed" style={{ width: `${failedPct}%`, left: `${pct}%` }} />}
    </div>
  );
}

export function ScriptsWarning({ compact }: { compact?: boolean }) {
  return compact ? (
    <span class="badge warn" title="This job runs the Python scripts embedded in its .blend file">
      Runs scripts
    </span>
  ) : (
    <p class="callout warn" role="note">
      <strong>Runs embedded Python.</strong> This job was submitted with scripts allowed: Python code inside the .blend file runs
      on every worker that renders it. Only allow this for files you trust.
    </p>
  );
}

export function Notices() {
  return (
    <div class="notices" aria-live="polite">
      {farm.notices.map((n) => (
        <div key={n.id} class={`notice ${n.kind}`} role={n.kind === 'error' ? 'alert' : 'status'}>
          <span>{n.text}</span>
          <button type="button" class="icon-button" aria-label="Dismiss" onClick={() => farm.dismiss(n.id)}>
            ×
          </button>
        </div>
      ))}
    </div>
  );
}

/** Shown while the live connection is down; it reconnects by itself. */
export function ConnectionBanner() {
  const live = farm.live;
  const [, tick] = useState(0);
  useEffect(() => {
    if (live.status !== 'down' || live.retryAt === null) return;
    const timer = setInterval(() => tick((n) => n + 1), 500);
    return () => clearInterval(timer);
  }, [live.status, live.retryAt]);
  if (live.status === 'open') return null;
  if (live.status === 'connecting' && !live.everOpen) return null;
  const seconds = live.retryAt ? Math.max(0, Math.ceil((live.retryAt - Date.now()) / 1000)) : null;
  return (
    <div class="banner" role="status" data-testid="connection-banner">
      <span class="banner-dot" aria-hidden="true" />
      <span>
        <strong>Live updates interrupted.</strong>{' '}
        {live.status === 'connecting' ? 'Reconnecting…' : seconds !== null ? `Reconnecting in ${seconds} s.` : live.reason}
        {live.reason && live.status === 'down' && seconds !== null ? <span class="muted"> ({live.reason})</span> : null}
      </span>
      {live.status === 'down' && live.retryAt !== null && (
        <button type="button" class="small" onClick={() => farm.retryNow()}>
          Retry now
        </button>
      )}
    </div>
  );
}
