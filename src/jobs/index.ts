export { compileJob, CompileError, type CompiledJob, type RenderRequest } from './compile.ts';
