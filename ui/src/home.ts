/**
 * The home screen: where to meet and under which name. Joining arrives with the media
 * issues; until then the form validates and explains what is coming.
 */
export function renderHome(root: HTMLElement): void {
  root.innerHTML = `
    <main class="home">
      <section class="card">
        <header>
          <div class="logo" aria-hidden="true"></div>
          <div>
            <h1>Confer</h1>
            <p class="tagline">Video meetings on your own server</p>
          </div>
        </header>
        <form id="join" novalidate>
          <label>Server
            <input name="server" type="url" value="http://127.0.0.1:7880" autocomplete="url" required />
          </label>
          <label>Display name
            <input name="name" type="text" placeholder="Your name" autocomplete="name" required />
          </label>
          <label>Room or join link
            <input name="room" type="text" placeholder="confer://join?… or a room id" required />
          </label>
          <button type="submit">Join</button>
          <p id="status" class="status" role="status"></p>
        </form>
      </section>
      <footer id="version"></footer>
    </main>`;

  const form = root.querySelector<HTMLFormElement>("#join");
  const status = root.querySelector<HTMLElement>("#status");
  form?.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!form || !status) return;
    const data = new FormData(form);
    const missing = ["server", "name", "room"].filter((k) => !String(data.get(k) ?? "").trim());
    status.textContent = missing.length
      ? `Please fill in: ${missing.join(", ")}.`
      : "Joining calls comes with the next release of this app.";
  });
}
