/**
 * Join links as the web client reads them: the join page's address
 * (`https://host[/prefix]/j/<room>?invite=…` or `&token=…`) and the app's
 * (`confer://join?server=…&room=…&invite=…`), as `crates/app-core/src/link.rs` does.
 */

export interface JoinTarget {
  /** The server's root address, ending in `/`. */
  server: string;
  room: string;
  invite: string | null;
  token: string | null;
}

export class LinkError extends Error {
  readonly code = "invalid_link";
}

export function parseLink(input: string): JoinTarget {
  const text = input.trim();
  if (!text) throw new LinkError("Enter a join link.");
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new LinkError("In the browser, join with the link you were sent (it starts with https://).");
  }
  const bad = (why: string) => new LinkError(`This join link cannot be used: ${why}.`);
  const credential = () => {
    const invite = url.searchParams.get("invite") || null;
    const token = url.searchParams.get("token") || null;
    if (!invite && !token) throw bad("it carries no invite");
    return { invite, token };
  };
  if (url.protocol === "confer:") {
    const server = url.searchParams.get("server");
    const room = url.searchParams.get("room");
    if (!server) throw bad("it names no server");
    if (!room) throw bad("it names no room");
    return { server: server.replace(/\/*$/, "/"), room, ...credential() };
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") throw bad("Confer links start with https:// or confer://join");
  const at = url.pathname.lastIndexOf("/j/");
  const room = at >= 0 ? decodeURIComponent(url.pathname.slice(at + 3).replace(/\/$/, "")) : "";
  if (!room || room.includes("/")) throw bad("it names no room");
  return { server: `${url.origin}${url.pathname.slice(0, at)}/`, room, ...credential() };
}

/** The join page's address for a target: the link to share. */
export function pageLink(target: JoinTarget): string {
  const query = target.invite ? `invite=${encodeURIComponent(target.invite)}` : `token=${encodeURIComponent(target.token ?? "")}`;
  return `${target.server}j/${encodeURIComponent(target.room)}?${query}`;
}
