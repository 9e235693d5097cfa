/** `agentkeys completion bash|zsh|fish`: a completion script generated from the command tree. */
import { Command, Argument } from 'commander';
import { CliContext } from '../context';

interface Node {
  path: string[];
  subcommands: { name: string; description: string }[];
  options: { flag: string; takesValue: boolean; description: string }[];
}

function walk(c: Command, path: string[], out: Node[]): Node[] {
  out.push({
    path,
    subcommands: c.commands.map((s) => ({ name: s.name(), description: s.description() })),
    options: [
      ...c.options
        .filter((o) => !o.hidden && o.long)
        .map((o) => ({ flag: o.long as string, takesValue: o.required || o.optional, description: o.description })),
      { flag: '--help', takesValue: false, description: 'show help' },
    ],
  });
  for (const s of c.commands) walk(s, [...path, s.name()], out);
  return out;
}

const shellWord = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

function bash(nodes: Node[]): string {
  const valueFlags = [...new Set(nodes.flatMap((n) => n.options.filter((o) => o.takesValue).map((o) => o.flag)))];
  const cases = nodes
    .map((n) => `    ${shellWord(n.path.join(' '))}) words=${shellWord([...n.subcommands.map((s) => s.name), ...n.options.map((o) => o.flag)].join(' '))} ;;`)
    .join('\n');
  return `# agentkeys completion for bash: source <(agentkeys completion bash)
_agentkeys() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}" path="" words="" i
  case "$prev" in
    --profile) COMPREPLY=( $(compgen -W "$(ls "$HOME/.agentkeys" 2>/dev/null)" -- "$cur") ); return ;;
    ${valueFlags.join('|')}) COMPREPLY=( $(compgen -f -- "$cur") ); return ;;
  esac
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "\${COMP_WORDS[i]}" in
      ${valueFlags.join('|')}) ((i++)) ;;
      -*) ;;
      *) path="\${path:+$path }\${COMP_WORDS[i]}" ;;
    esac
  done
  case "$path" in
${cases}
  esac
  COMPREPLY=( $(compgen -W "$words" -- "$cur") )
}
complete -o default -F _agentkeys agentkeys
`;
}

function zsh(nodes: Node[]): string {
  return `#compdef agentkeys
# agentkeys completion for zsh: source <(agentkeys completion zsh)
autoload -U +X bashcompinit && bashcompinit
${bash(nodes).split('\n').slice(1).join('\n')}`;
}

function fish(nodes: Node[]): string {
  const lines = ['# agentkeys completion for fish: agentkeys completion fish | source', 'complete -c agentkeys -e'];
  for (const n of nodes) {
    // Every word of the path seen (`mint aws` and `configure aws` are different commands).
    const seen = n.path.length === 0 ? '__fish_use_subcommand' : n.path.map((w) => `__fish_seen_subcommand_from ${w}`).join('; and ');
    const notDeeper = n.path.length && n.subcommands.length ? `; and not __fish_seen_subcommand_from ${n.subcommands.map((s) => s.name).join(' ')}` : '';
    for (const s of n.subcommands) lines.push(`complete -c agentkeys -f -n ${shellWord(seen + notDeeper)} -a ${s.name} -d ${shellWord(s.description)}`);
    for (const o of n.options)
      lines.push(`complete -c agentkeys -n ${shellWord(seen)} -l ${o.flag.slice(2)}${o.takesValue ? ' -r' : ''} -d ${shellWord(o.description)}`);
  }
  return `${lines.join('\n')}\n`;
}

export function completionCommand(): Command {
  return new Command('completion')
    .description('print a shell completion script (bash: source <(agentkeys completion bash))')
    .addArgument(new Argument('<shell>', 'the shell').choices(['bash', 'zsh', 'fish']))
    .action(async (shell: 'bash' | 'zsh' | 'fish', _o: object, cmd: Command) => {
      await CliContext.open(cmd);
      let root = cmd;
      while (root.parent) root = root.parent;
      const nodes = walk(root, [], []);
      process.stdout.write({ bash, zsh, fish }[shell](nodes));
    });
}
